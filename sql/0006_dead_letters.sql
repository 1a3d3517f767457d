-- 0006: fixing and redriving dead letters (issue 11): retry into the journal
-- or back to Kafka, discard, purge, automatic retry with backoff.

-- 'failed': automatic retry gave up (dlq-retry-max-attempts); an operator
-- may still retry or discard it. 'retried': republished to Kafka, the
-- broker's acknowledgement not yet seen (resolved once it is).
ALTER TABLE event_dlq DROP CONSTRAINT event_dlq_status_check;
ALTER TABLE event_dlq ADD CONSTRAINT event_dlq_status_check
  CHECK (status IN ('pending', 'retried', 'resolved', 'discarded', 'failed'));

-- When automatic retry tries the row next (NULL: received_at plus the first
-- backoff, for rows of an auto-retried error class; never for the others).
ALTER TABLE event_dlq ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE event_dlq ADD COLUMN last_attempt_at timestamptz;
-- How it left the queue: journal, republish, auto (automatic retry into the
-- journal), discard.
ALTER TABLE event_dlq ADD COLUMN resolution text;
-- The journal row it became (resolution journal or auto).
ALTER TABLE event_dlq ADD COLUMN resolved_event_id bigint;
-- Why an operator discarded it.
ALTER TABLE event_dlq ADD COLUMN discard_reason text;
-- Who changed its status last (principal; "auto-retry" for the service).
ALTER TABLE event_dlq ADD COLUMN resolved_by text;

-- Unresolved rows are few next to the journal: a partial index keeps the
-- pending count, the retry sweep and GET /dlq?status=pending cheap.
CREATE INDEX event_dlq_open_idx ON event_dlq (id)
  WHERE status IN ('pending', 'retried', 'failed');

-- The DLQ row a journal row came from (a retry into the journal).
ALTER TABLE event_journal ADD COLUMN dlq_id bigint;
CREATE UNIQUE INDEX event_journal_dlq_id_idx
  ON event_journal (dlq_id) WHERE dlq_id IS NOT NULL;
