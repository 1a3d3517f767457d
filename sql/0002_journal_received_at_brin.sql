-- event_journal grows by about 100 000 rows a second at full speed, in
-- received_at order: a BRIN index serves time-range reads (replay by time
-- range, retention) at a fraction of a B-tree's insert cost, which measured
-- about 12% of PostgreSQL's CPU per journalled row (bench/run.sh, perf).
DROP INDEX IF EXISTS event_journal_received_at_idx;
CREATE INDEX event_journal_received_at_brin
  ON event_journal USING brin (received_at) WITH (pages_per_range = 32);
