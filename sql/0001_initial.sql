-- 0001: journal, dead-letter queue and the consumer group's offsets.
-- Applied by the service itself (storage::migrate), in one transaction
-- together with its schema_migrations row. Migrations are numbered
-- NNNN_name.sql, never edited once released, and contain no BEGIN/COMMIT.

-- Every accepted Kafka event, exactly once per (topic, partition, offset):
-- the consumer_offsets fence guarantees it, so there is no unique index on the
-- coordinates (its cost will be measured before adding one).
CREATE TABLE event_journal (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  tenant_id       text        NOT NULL,
  topic           text        NOT NULL,
  partition       integer     NOT NULL,
  "offset"        bigint      NOT NULL,
  key             bytea,                        -- NULL: the record had no key
  -- [{"key": k, "value": v}, ...] in Kafka order; "value_b64"/"key_b64" for
  -- bytes that are not UTF-8 text, "value": null for a null header value.
  headers         jsonb       NOT NULL DEFAULT '[]',
  payload         jsonb       NOT NULL,
  kafka_timestamp timestamptz,                  -- NULL: no timestamp
  received_at     timestamptz NOT NULL DEFAULT now(),
  replay_of       bigint                        -- journal id this row replays
);
CREATE INDEX event_journal_received_at_idx ON event_journal (received_at);

-- Records that could not be journalled, as received (payload is the raw
-- value: it may be neither JSON nor UTF-8; NULL for a null Kafka value).
CREATE TABLE event_dlq (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  topic           text        NOT NULL,
  partition       integer,
  "offset"        bigint,
  key             bytea,
  headers         jsonb       NOT NULL DEFAULT '[]',
  payload         bytea,
  kafka_timestamp timestamptz,
  tenant_id       text,                         -- when known
  -- empty_value, too_large, invalid_json, missing_tenant, db_rejected
  error_class     text        NOT NULL,
  error           text        NOT NULL,
  attempts        integer     NOT NULL DEFAULT 1,
  status          text        NOT NULL DEFAULT 'pending'
    CONSTRAINT event_dlq_status_check
    CHECK (status IN ('pending', 'retried', 'resolved', 'discarded')),
  received_at     timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX event_dlq_received_at_idx ON event_dlq (received_at);
CREATE INDEX event_dlq_topic_idx ON event_dlq (topic);

-- The consumer group's position, committed in the same transaction as the
-- rows it covers: the next offset to journal per (group, topic, partition).
-- Writers lock these rows (SELECT ... FOR UPDATE) and skip records below
-- next_offset, which makes journalling exactly-once across rebalances.
CREATE TABLE consumer_offsets (
  group_id    text        NOT NULL,
  topic       text        NOT NULL,
  partition   integer     NOT NULL,
  next_offset bigint      NOT NULL,
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (group_id, topic, partition)
);
