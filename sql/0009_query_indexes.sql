-- 0009: indexes for the operator queries on event_dlq at scale (issue 13,
-- bench/scale.sh; plans and figures in bench/README.md "The journal at
-- scale"). GET /dlq lists newest first (ORDER BY id DESC, keyset on id); on
-- a million rows a filter that keeps few rows walked the primary key
-- backwards through all the others. Dead letters arrive far more rarely
-- than journal rows, so these indexes cost ingestion next to nothing. The
-- journal gets no index here: event_journal_tenant_idx (0008) serves its
-- tenant, topic and time-range queries together with partition pruning.
-- A (status, error_class, id) index was tried and left out: the planner
-- kept walking the primary key for the measured triage filters (a few
-- thousand rows at most), and it took the automatic retry sweep away from
-- event_dlq_open_idx.

-- GET /dlq?tenant_id=... and every tenant-scoped key's GET /dlq (its scope
-- is a tenant list): the tenant's rows, newest first.
CREATE INDEX event_dlq_tenant_idx ON event_dlq (tenant_id, id);
