-- 0003: the journal's offset fence is keyed by the Kafka cluster, not by the
-- consumer group. A Kafka record is (cluster, topic, partition, offset),
-- whichever group reads it: a new KAFKA_GROUP_ID (a migration, a canary) must
-- continue from the journal's position instead of journalling every retained
-- record again.
--
-- The group-keyed rows carry no cluster id, so they cannot be moved here by
-- SQL alone. They are kept as a seed: the first start of a group that knows
-- its cluster id adopts that group's rows (storage::adopt_group_offsets:
-- moved into journal_offsets with greatest(), then deleted, in one
-- transaction; idempotent, safe with instances starting together). Renaming
-- the table also stops binaries of the previous release from journalling
-- unfenced: their batches fail (relation does not exist) and are retried
-- until they are replaced.
ALTER TABLE consumer_offsets RENAME TO legacy_group_offsets;
ALTER INDEX consumer_offsets_pkey RENAME TO legacy_group_offsets_pkey;

-- The next offset to journal per (cluster, topic, partition), committed in
-- the same transaction as the rows it covers. Writers lock these rows
-- (SELECT ... FOR UPDATE) and skip records below next_offset, which makes
-- journalling exactly-once across rebalances, restarts and consumer groups.
CREATE TABLE journal_offsets (
  cluster_id  text        NOT NULL,  -- Kafka's cluster id (Metadata)
  topic       text        NOT NULL,
  partition   integer     NOT NULL,
  next_offset bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (cluster_id, topic, partition)
);
