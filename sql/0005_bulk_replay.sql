-- 0005: finding events and replaying them in bulk (issue 10): the original
-- bytes of each payload, replay jobs, idempotent POSTs.

-- The payload exactly as received (UTF-8 JSON text, already validated), so
-- that a replay without a transform publishes the original bytes: jsonb
-- reorders keys, drops duplicate keys and respells numbers. NULL for rows
-- journalled before this migration (a replay then publishes jsonb's text).
ALTER TABLE event_journal ADD COLUMN payload_raw text;
-- The bulk replay job that published this row (with replay_of): a job never
-- journals the same event twice (see the index below and the ingest check).
ALTER TABLE event_journal ADD COLUMN replay_job bigint;

-- Replays are rare next to ingested events: partial indexes cost ingestion
-- nothing for ordinary rows.
CREATE INDEX event_journal_replay_of_idx
  ON event_journal (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX event_journal_replay_job_idx
  ON event_journal (replay_job, replay_of) WHERE replay_job IS NOT NULL;

-- Bulk operations (replays now; DLQ retry/discard later), run by the JOBS
-- actor. The set of rows a job covers is fixed when it is created: its
-- filter, the requester's tenant scope, and `upto_id` (the highest journal
-- id at creation; rows journalled later are not added). Progress is
-- `cursor_id`: every row with id <= cursor_id that the job covers has been
-- handled (published and acknowledged, or counted failed).
CREATE TABLE jobs (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind           text        NOT NULL,          -- replay, ...
  status         text        NOT NULL DEFAULT 'queued'
    CONSTRAINT jobs_status_check
    CHECK (status IN ('queued', 'running', 'succeeded', 'failed',
                      'cancelled')),
  request        jsonb       NOT NULL,          -- the request as accepted
  scope_all      boolean     NOT NULL,          -- the requester's scope
  scope_tenants  text[]      NOT NULL DEFAULT '{}',
  upto_id        bigint      NOT NULL,
  cursor_id      bigint      NOT NULL DEFAULT 0,
  matched        bigint      NOT NULL,
  done           bigint      NOT NULL DEFAULT 0,
  failed         bigint      NOT NULL DEFAULT 0,
  requested_by   text        NOT NULL,
  request_id     text,
  last_error     text,
  cancel_requested boolean   NOT NULL DEFAULT false,
  owner          text,                          -- instance running it
  heartbeat_at   timestamptz,                   -- owner's last progress
  created_at     timestamptz NOT NULL DEFAULT now(),
  started_at     timestamptz,
  finished_at    timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_active_idx ON jobs (id) WHERE status IN ('queued', 'running');

-- Idempotency-Key: the first answer to a POST, per (principal, key), kept
-- for 24 hours. state 'pending' while the first request runs.
CREATE TABLE idempotency_keys (
  principal    text        NOT NULL,
  key          text        NOT NULL,
  fingerprint  text        NOT NULL,            -- method, path and body hash
  state        text        NOT NULL DEFAULT 'pending'
    CONSTRAINT idempotency_keys_state_check
    CHECK (state IN ('pending', 'done')),
  status       integer,
  body         text,
  headers      jsonb       NOT NULL DEFAULT '[]',
  created_at   timestamptz NOT NULL DEFAULT now(),
  pending_until timestamptz,                    -- a pending claim expires
  PRIMARY KEY (principal, key)
);
CREATE INDEX idempotency_keys_created_at_idx ON idempotency_keys (created_at);
