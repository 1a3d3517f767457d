-- 0008: the journal at scale (issue 13). event_journal becomes a table
-- partitioned by received_at (RANGE, UTC days or months), so that retention
-- drops whole partitions (never a DELETE scan) and time-range reads touch
-- only the partitions of their range.
--
-- The rows of the unpartitioned table move into partitions in this
-- migration's transaction: ingestion (and every reader of event_journal)
-- waits for it. bench/README.md records how long it takes per million rows.
-- Ids, offsets (journal_offsets is not touched) and provenance (replay_of,
-- replay_job, dlq_id hold ids) are kept as they are.
--
-- The partition interval of the partitions this migration creates is the
-- session setting ces.journal_partition_interval (storage::migrate sets it
-- from journal-partition-interval): 'day' when unset.

-- Every partition the service created or dropped. Partition bounds are read
-- from here, never parsed from the catalog. A dropped partition keeps its row
-- (state 'dropped' with its id range), so that an id it held answers `gone`
-- rather than "not found".
CREATE TABLE journal_partitions (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name        text        NOT NULL,
  range_from  timestamptz NOT NULL,              -- inclusive
  range_to    timestamptz NOT NULL,              -- exclusive
  -- attached: part of event_journal; detaching: DETACH ... CONCURRENTLY
  -- started (finished or finalized by the next retention run); dropped.
  state       text        NOT NULL DEFAULT 'attached'
    CONSTRAINT journal_partitions_state_check
    CHECK (state IN ('attached', 'detaching', 'dropped')),
  created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
  dropped_at  timestamptz,
  -- Recorded when the partition is dropped (NULL: it held no rows).
  min_id      bigint,
  max_id      bigint,
  row_count   bigint,
  CONSTRAINT journal_partitions_range_check CHECK (range_from < range_to)
);
CREATE UNIQUE INDEX journal_partitions_live_name_idx
  ON journal_partitions (name) WHERE state <> 'dropped';
CREATE INDEX journal_partitions_range_idx
  ON journal_partitions (range_from) WHERE state <> 'dropped';

-- The start (UTC) of the interval holding `t`: 'day' or 'month'.
CREATE FUNCTION ces_journal_interval_start(t timestamptz, step text)
RETURNS timestamptz LANGUAGE sql STABLE AS $$
  SELECT date_trunc(CASE step WHEN 'month' THEN 'month' ELSE 'day' END,
                    t AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
$$;

-- Creates the partitions of event_journal missing for any time in
-- [p_from, p_to] (both inclusive) and returns how many it created. A new
-- partition covers the interval (`p_step`: 'day' or 'month', UTC) holding
-- its time, clipped to its neighbours, so that changing the interval
-- setting never makes partitions overlap. Cheap when nothing is missing (one
-- index lookup per partition of the range, no lock on event_journal);
-- creating takes a transaction-level advisory lock, so instances doing it
-- together create each partition once.
CREATE FUNCTION ces_journal_ensure_partitions(p_from timestamptz,
                                              p_to timestamptz,
                                              p_step text DEFAULT 'day')
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  t       timestamptz;
  covered timestamptz;
  lo      timestamptz;
  hi      timestamptz;
  nm      text;
  made    integer := 0;
  locked  boolean := false;
BEGIN
  IF p_step IS NULL OR p_step NOT IN ('day', 'month') THEN
    RAISE EXCEPTION 'journal partition interval must be day or month, not %',
      coalesce(p_step, 'NULL') USING ERRCODE = 'invalid_parameter_value';
  END IF;
  IF p_from IS NULL OR p_to IS NULL OR p_to < p_from THEN
    RAISE EXCEPTION 'journal partitions: bad range % .. %', p_from, p_to
      USING ERRCODE = 'invalid_parameter_value';
  END IF;
  t := p_from;
  WHILE t <= p_to LOOP
    SELECT range_to INTO covered FROM journal_partitions
     WHERE state = 'attached' AND range_from <= t AND range_to > t;
    IF FOUND THEN
      t := covered;
      CONTINUE;
    END IF;
    -- A partition being dropped still holds its range (until its DETACH
    -- ... CONCURRENTLY and DROP finish): no new one may overlap it.
    IF EXISTS (SELECT 1 FROM journal_partitions
                WHERE state = 'detaching' AND range_from <= t
                  AND range_to > t) THEN
      RAISE EXCEPTION 'journal partition for % is being dropped by retention',
        t USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF NOT locked THEN
      -- "ces_part" in ASCII; then look again: another instance may have
      -- created it meanwhile.
      PERFORM pg_advisory_xact_lock(7166760061125473908);
      locked := true;
      CONTINUE;
    END IF;
    lo := ces_journal_interval_start(t, p_step);
    hi := CASE p_step WHEN 'month' THEN
            ((lo AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC'
          ELSE lo + interval '1 day' END;
    SELECT greatest(lo, max(range_to)) INTO lo FROM journal_partitions
     WHERE state <> 'dropped' AND range_to <= t;
    SELECT least(hi, min(range_from)) INTO hi FROM journal_partitions
     WHERE state <> 'dropped' AND range_from > t;
    nm := 'event_journal_' || to_char(lo AT TIME ZONE 'UTC', 'YYYYMMDD');
    IF lo <> date_trunc('day', lo AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' THEN
      nm := nm || to_char(lo AT TIME ZONE 'UTC', '"_"HH24MISSUS');
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF event_journal'
                   ' FOR VALUES FROM (%L) TO (%L)', nm, lo, hi);
    INSERT INTO journal_partitions (name, range_from, range_to)
    VALUES (nm, lo, hi);
    made := made + 1;
    t := hi;
  END LOOP;
  RETURN made;
END
$$;

-- The unpartitioned journal steps aside (its sequence and primary key keep
-- their values under new names until the rows have moved).
ALTER TABLE event_journal RENAME TO event_journal_unpartitioned;
ALTER TABLE event_journal_unpartitioned
  RENAME CONSTRAINT event_journal_pkey TO event_journal_unpartitioned_pkey;
ALTER SEQUENCE event_journal_id_seq RENAME TO event_journal_unpartitioned_id_seq;

-- The same columns in the same order. Ids come from one sequence for all
-- partitions: unique and increasing across partitions. The primary key must
-- hold the partition key; id alone stays unique because only the sequence
-- makes ids (GENERATED ALWAYS).
CREATE TABLE event_journal (
  id              bigint      GENERATED ALWAYS AS IDENTITY,
  tenant_id       text        NOT NULL,
  topic           text        NOT NULL,
  partition       integer     NOT NULL,
  "offset"        bigint      NOT NULL,
  key             bytea,
  headers         jsonb       NOT NULL DEFAULT '[]',
  payload         jsonb       NOT NULL,
  kafka_timestamp timestamptz,
  received_at     timestamptz NOT NULL DEFAULT now(),
  replay_of       bigint,
  payload_raw     text,
  replay_job      bigint,
  dlq_id          bigint
) PARTITION BY RANGE (received_at);

DO $$
DECLARE
  step text := coalesce(nullif(current_setting('ces.journal_partition_interval',
                                               true), ''), 'day');
  lo   timestamptz;
  hi   timestamptz;
  last bigint;
BEGIN
  SELECT min(received_at), max(received_at) INTO lo, hi
    FROM event_journal_unpartitioned;
  IF lo IS NOT NULL THEN
    PERFORM ces_journal_ensure_partitions(lo, hi, step);
  END IF;
  -- Today and tomorrow; the service creates the following ones ahead.
  PERFORM ces_journal_ensure_partitions(now(), now() + interval '1 day', step);

  INSERT INTO event_journal OVERRIDING SYSTEM VALUE
  SELECT * FROM event_journal_unpartitioned;

  -- Ids continue after the old sequence (which may be past the last row:
  -- rolled-back inserts), so they stay increasing.
  SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
    INTO last FROM event_journal_unpartitioned_id_seq;
  SELECT greatest(last, coalesce(max(id), 0)) INTO last
    FROM event_journal_unpartitioned;
  IF last > 0 THEN
    PERFORM setval(pg_get_serial_sequence('event_journal', 'id'), last, true);
  END IF;
END
$$;

DROP TABLE event_journal_unpartitioned;

-- Indexes after the rows moved (faster than maintaining them row by row);
-- each partition gets its own copy of every index. What each costs at
-- ingest and serves is measured in bench/README.md ("The journal at scale").
ALTER TABLE event_journal ADD CONSTRAINT event_journal_pkey
  PRIMARY KEY (id, received_at);
-- GET /events?tenant_id=... and tenant-scoped keys: newest first by id.
CREATE INDEX event_journal_tenant_idx ON event_journal (tenant_id, id);
CREATE INDEX event_journal_received_at_brin
  ON event_journal USING brin (received_at) WITH (pages_per_range = 32);
CREATE INDEX event_journal_replay_of_idx
  ON event_journal (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX event_journal_replay_job_idx
  ON event_journal (replay_job, replay_of) WHERE replay_job IS NOT NULL;
-- Not UNIQUE any more: a unique index of a partitioned table must hold the
-- partition key, which would not make dlq_id unique. One journal row per
-- DLQ entry is kept by the retry itself: it locks the entry (FOR UPDATE) and
-- writes the journal row only while the entry is open, in one transaction.
CREATE INDEX event_journal_dlq_id_idx
  ON event_journal (dlq_id) WHERE dlq_id IS NOT NULL;
