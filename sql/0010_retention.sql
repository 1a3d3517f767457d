-- 0010: retention of the operator tables (issue 13). The MAINTENANCE actor
-- deletes resolved/discarded DLQ rows and old audit_log rows in small
-- batches (storage/retention.cpp).

-- The DLQ purge's scan: the closed rows by when they last changed, oldest
-- first, without reading the open ones or the whole table.
CREATE INDEX event_dlq_closed_updated_at_idx ON event_dlq (updated_at)
  WHERE status IN ('resolved', 'discarded');

-- audit_log stays append-only, with one exception: a transaction that
-- declares a retention cutoff (SELECT set_config(
-- 'ces.audit_retention_cutoff', <timestamptz>, true)) may DELETE the rows
-- older than it. The cutoff must lie at least one day back
-- (audit-retention-days is at least 1), so it can never name the recent
-- history. UPDATE and TRUNCATE stay refused, and so does any other DELETE.
-- This guards against mistakes and against the service's own code; the
-- table's owner can still drop the trigger (a database-level guarantee
-- needs a separate owner role: README "Known gaps").
CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  cutoff_text text;
  cutoff timestamptz;
BEGIN
  IF TG_OP = 'DELETE' THEN
    cutoff_text := current_setting('ces.audit_retention_cutoff', true);
    IF cutoff_text IS NOT NULL AND cutoff_text <> '' THEN
      cutoff := cutoff_text::timestamptz;
      IF cutoff <= now() - interval '1 day' AND OLD.at < cutoff THEN
        RETURN OLD;
      END IF;
    END IF;
  END IF;
  RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
    USING ERRCODE = 'insufficient_privilege';
END
$$;
