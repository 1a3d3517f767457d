-- 0004: operator security. API keys (stored as hashes only), the append-only
-- audit log, and the record of every replay the service published (the only
-- provenance the journal believes).

-- Operator API keys. The key itself is never stored: key_hash is its SHA-256
-- (a key is 256 random bits, so a plain hash is enough; no password hashing
-- needed). A name is unique among the keys that are not revoked; revoked
-- keys stay as history.
CREATE TABLE api_keys (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text        NOT NULL
    CONSTRAINT api_keys_name_check CHECK (name ~ '^[A-Za-z0-9._-]{1,64}$'),
  role         text        NOT NULL
    CONSTRAINT api_keys_role_check
    CHECK (role IN ('viewer', 'operator', 'admin')),
  all_tenants  boolean     NOT NULL,            -- true: "*"
  tenants      text[]      NOT NULL DEFAULT '{}',
  key_hash     bytea       NOT NULL UNIQUE,      -- sha256(key)
  created_at   timestamptz NOT NULL DEFAULT now(),
  created_by   text        NOT NULL,
  expires_at   timestamptz,                      -- NULL: never
  revoked_at   timestamptz,
  last_used_at timestamptz,
  CONSTRAINT api_keys_tenants_check
    CHECK (all_tenants OR cardinality(tenants) > 0)
);
CREATE UNIQUE INDEX api_keys_active_name_idx ON api_keys (name)
  WHERE revoked_at IS NULL;

-- One row per mutating operator action and per refused request (401, 403,
-- 429). Append-only: UPDATE, DELETE and TRUNCATE are refused by triggers.
CREATE TABLE audit_log (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  request_id  text,
  principal   text,                 -- key name or JWT sub; NULL: unknown
  role        text,
  tenants     text[],               -- NULL: all tenants ("*") or unknown
  action      text        NOT NULL, -- replay, key.create, key.revoke, ...
  target      text,                 -- e.g. "event/42", "key/ops"
  parameters  jsonb       NOT NULL DEFAULT '{}',
  outcome     text        NOT NULL, -- ok, refused, failed
  status      integer,              -- HTTP status answered (NULL: CLI)
  counts      jsonb,                -- e.g. {"events": 1}, {"refused": 37}
  client_addr text
);
CREATE INDEX audit_log_at_idx ON audit_log (at);

CREATE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_log_no_update_delete
  BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate
  BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();

-- Every replay the service published, recorded before the message is
-- produced. At ingest, x-replay-of / x-replay-id headers set
-- event_journal.replay_of only when they name a row of this table (the same
-- replay id and event id): a producer cannot forge provenance.
CREATE TABLE replays (
  replay_id    text        PRIMARY KEY,     -- the x-replay-id header (uuid)
  event_id     bigint      NOT NULL,        -- the journal row replayed
  tenant_id    text        NOT NULL,
  topic        text        NOT NULL,        -- where it was published
  principal    text        NOT NULL,
  job_id       bigint,                      -- bulk replay job; NULL: single
  request_id   text,
  requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX replays_event_id_idx ON replays (event_id);
