-- bench/seed_dlq.sql: fills a migrated crm-events-sink database with
-- realistic event_dlq rows, server-side (INSERT ... SELECT), for the scale
-- benchmark (bench/scale.sh; bench/README.md "The journal at scale").
--
--   psql URL -X -v ON_ERROR_STOP=1 -v rows=1000000 -v tenants=2000 \
--     -v days=90 -f bench/seed_dlq.sql
--
-- The rows, in received_at order (ids grow with time) over `days` days up to
-- now:
--   * error_class: invalid_json 40%, missing_tenant 25%, too_large 15%,
--     empty_value 10%, db_rejected 10%; tenant_id NULL for missing_tenant
--     (and 1 in 4 empty_value), else skewed as the journal's seed
--     ('tenant-NNNN', floor(tenants * random()^3));
--   * status: rows older than 7 days mostly resolved (60%) or discarded
--     (35%), some failed (5%); the last 7 days also pending (~40%) and
--     retried (~2%); resolution, resolved_by, discard_reason to match;
--   * both topics, partition 0..11, offsets growing; a key, a headers array,
--     a payload of the class (broken JSON, oversized marker, ...).
-- Pending rows get no next_attempt_at and attempts 1; scale.sh runs the
-- service without automatic retry so that they stay as seeded.
\set ON_ERROR_STOP 1
\if :{?rows}
\else
  \set rows 1000000
\endif
\if :{?tenants}
\else
  \set tenants 2000
\endif
\if :{?days}
\else
  \set days 90
\endif
\if :{?seed}
\else
  \set seed 0.43
\endif

SET client_min_messages = warning;
SET synchronous_commit = off;

SELECT extract(epoch FROM clock_timestamp()) AS dlq_t0,
       date_trunc('second', now()) - make_interval(days => :days)
         AS dlq_from,
       date_trunc('second', now()) AS dlq_to,
       coalesce((SELECT max(id) FROM event_dlq), 0) AS dlq_max_id_before
\gset
SELECT setseed(:seed) AS dlq_void \gset

-- Ten statements of rows (each its own transaction).
SELECT format($f$
INSERT INTO event_dlq (topic, partition, "offset", key, headers, payload,
                       kafka_timestamp, tenant_id, error_class, error,
                       attempts, status, received_at, updated_at,
                       last_attempt_at, resolution, resolved_by,
                       discard_reason)
SELECT topic, part, off, convert_to(ekey, 'UTF8'),
       jsonb_build_array(jsonb_build_object('key', 'source', 'value', 'crm')),
       convert_to(CASE cls
         WHEN 'invalid_json' THEN '{"event_id":"' || ekey || '","tenant_id":'
         WHEN 'missing_tenant' THEN '{"event_id":"' || ekey
                                    || '","event_type":"lead.created"}'
         WHEN 'too_large' THEN '{"event_id":"' || ekey || '","blob":"'
                               || repeat('x', 200) || '..."}'
         WHEN 'empty_value' THEN ''
         ELSE '{"event_id":"' || ekey || '","tenant_id":"' || tenant || '"}'
       END, 'UTF8'),
       at - interval '1 second',
       CASE WHEN cls = 'missing_tenant' OR (cls = 'empty_value' AND u < 0.25)
            THEN NULL ELSE tenant END,
       cls,
       CASE cls
         WHEN 'invalid_json' THEN 'payload is not JSON: unexpected end'
         WHEN 'missing_tenant' THEN 'payload has no tenant_id'
         WHEN 'too_large' THEN 'payload larger than max-payload-bytes'
         WHEN 'empty_value' THEN 'record has no value'
         ELSE 'journal insert failed: value too long'
       END,
       CASE WHEN st IN ('pending', 'retried') THEN 1 ELSE 1 + (g %% 3) END,
       st, at,
       CASE WHEN st = 'pending' THEN at ELSE at + interval '1 hour' END,
       CASE WHEN st = 'pending' THEN NULL ELSE at + interval '1 hour' END,
       CASE st WHEN 'resolved' THEN 'journal' WHEN 'discarded' THEN 'discard'
               WHEN 'retried' THEN 'republish' END,
       CASE WHEN st IN ('resolved', 'discarded', 'retried') THEN 'ops' END,
       CASE WHEN st = 'discarded' THEN 'bench: not needed' END
FROM (
  SELECT g, u, tenant, topic, part, off, at, ekey, cls,
         CASE WHEN at > %4$L::timestamptz - interval '7 days' THEN
           CASE WHEN v < 0.40 THEN 'pending' WHEN v < 0.42 THEN 'retried'
                WHEN v < 0.70 THEN 'resolved' WHEN v < 0.95 THEN 'discarded'
                ELSE 'failed' END
         ELSE
           CASE WHEN v < 0.60 THEN 'resolved' WHEN v < 0.95 THEN 'discarded'
                ELSE 'failed' END
         END AS st
  FROM (
    SELECT g, random() AS u, random() AS v,
           'tenant-' || lpad(floor(%2$s * random() ^ 3)::int::text, 4, '0')
             AS tenant,
           CASE (g / 12) %% 2 WHEN 0 THEN 'apexflow.leads.created'
                              ELSE 'apexflow.jobs.created' END AS topic,
           (g %% 12)::int AS part,
           g / 24 AS off,
           %3$L::timestamptz
             + (%4$L::timestamptz - %3$L::timestamptz) * (g::float8 / %5$s)
             AS at,
           'lead_' || substr(md5(g::text), 1, 16) AS ekey,
           CASE WHEN (g * 2654435761) %% 100 < 40 THEN 'invalid_json'
                WHEN (g * 2654435761) %% 100 < 65 THEN 'missing_tenant'
                WHEN (g * 2654435761) %% 100 < 80 THEN 'too_large'
                WHEN (g * 2654435761) %% 100 < 90 THEN 'empty_value'
                ELSE 'db_rejected' END AS cls
    FROM generate_series(%6$s::bigint, %7$s::bigint) AS g
  ) AS r
) AS e
$f$, NULL, :tenants, :'dlq_from', :'dlq_to', :rows,
   d * :rows / 10, (d + 1) * :rows / 10 - 1)
FROM generate_series(0::bigint, 9) AS d
WHERE (d + 1) * :rows / 10 - 1 >= d * :rows / 10
ORDER BY d
\gexec

SELECT extract(epoch FROM clock_timestamp()) AS dlq_t1 \gset
SELECT count(*) AS dlq_rows FROM event_dlq WHERE id > :dlq_max_id_before \gset
SELECT round(:dlq_rows / greatest(:dlq_t1 - :dlq_t0, 0.001)) AS dlq_rps,
       round((:dlq_t1 - :dlq_t0)::numeric, 1) AS dlq_s
\gset
\echo seed_dlq: rows=:dlq_rows seconds=:dlq_s rows_per_s=:dlq_rps
SELECT 'seed_dlq: ' || status || ' ' || count(*) FROM event_dlq
 GROUP BY status ORDER BY status;
