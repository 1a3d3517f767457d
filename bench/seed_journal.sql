-- bench/seed_journal.sql: fills a migrated crm-events-sink database with
-- realistic event_journal rows, server-side (INSERT ... SELECT), for the
-- scale benchmark (bench/scale.sh; bench/README.md "The journal at scale").
--
--   psql URL -X -v ON_ERROR_STOP=1 -v rows=10000000 -v tenants=2000 \
--     -v days=90 -v interval=day -f bench/seed_journal.sql
--
-- Every variable has the default shown; `seed` (0.42) makes runs repeatable.
-- Parallel load (bench/scale.sh does it): `-v phase=prepare` once, then
-- `-v phase=load -v part=K -v parts=J` for K = 0..J-1 at the same time, then
-- `-v phase=finish` once (default phase=all: the three in one session). Ids
-- are given explicitly (the next values of the journal's identity sequence,
-- which is moved past them at the end), so they follow received_at whatever
-- the order the parts are loaded in.
-- The rows:
--   * received_at: `days` days up to now, evenly spread and in id order (ids
--     grow with time, as the service writes them); kafka_timestamp a little
--     earlier;
--   * tenant_id: 'tenant-NNNN', skewed: tenant index floor(tenants *
--     random()^3), so tenant-0000 holds ~8% of the rows (~790,000 of 10 M) and
--     tenant-1999 ~0.02% (~1,700); the large and small tenants a benchmark
--     picks are printed at the end;
--   * topic: apexflow.leads.created / apexflow.jobs.created, partition 0..11,
--     offsets increasing per (topic, partition) with time;
--   * key ('lead_...' / 'job_...'), a headers array of two headers, a ~400
--     byte JSON payload (with tenant_id) and payload_raw, its exact text.
-- The partitions are created first (ces_journal_ensure_partitions, the
-- `interval` step). Rows are inserted one day per statement (each its own
-- transaction) with the service's indexes in place; the seeding rate
-- (rows/s) is printed. The identity sequence stays the source of ids: the
-- service's later rows get larger ids.
\set ON_ERROR_STOP 1
\if :{?rows}
\else
  \set rows 10000000
\endif
\if :{?tenants}
\else
  \set tenants 2000
\endif
\if :{?days}
\else
  \set days 90
\endif
\if :{?interval}
\else
  \set interval day
\endif
\if :{?seed}
\else
  \set seed 0.42
\endif
\if :{?rebuild_indexes}
\else
  \set rebuild_indexes 1
\endif
\if :{?phase}
\else
  \set phase all
\endif
\if :{?part}
\else
  \set part 0
\endif
\if :{?parts}
\else
  \set parts 1
\endif
SELECT :'phase' IN ('all', 'prepare') AS do_prepare,
       :'phase' IN ('all', 'load') AS do_load,
       :'phase' IN ('all', 'finish') AS do_finish,
       :'phase' IN ('all', 'prepare', 'load', 'finish') AS phase_ok
\gset
\if :phase_ok
\else
  \echo seed_journal: phase must be all, prepare, load or finish
  \quit 2
\endif

SET client_min_messages = warning;
-- A benchmark fixture: losing the last commits in a crash is harmless.
SET synchronous_commit = off;
SET maintenance_work_mem = '256MB';

SELECT pg_get_serial_sequence('event_journal', 'id') AS seed_seq \gset

\if :do_prepare
-- The run's parameters, for the load and finish phases.
DROP TABLE IF EXISTS seed_journal_run;
CREATE TABLE seed_journal_run AS
SELECT extract(epoch FROM clock_timestamp()) AS t0,
       -- The seeded span: whole seconds, so that every chunk computes the
       -- same times.
       date_trunc('second', now()) - make_interval(days => :days) AS span_from,
       date_trunc('second', now()) AS span_to,
       (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END
          FROM :seed_seq) AS id_base,
       NULL::float8 AS t_rows;

SELECT ces_journal_ensure_partitions(span_from, span_to + interval '1 day',
                                     :'interval') AS seed_partitions_made
  FROM seed_journal_run
\gset
\echo seed_journal: :seed_partitions_made partitions created (:interval)

-- rebuild_indexes=1 (the default): the journal's indexes (whatever the
-- migrations made them: their definitions are read from the catalog) are
-- dropped for the load and built again after it, which is about twice as
-- fast as maintaining them row by row. 0: they stay in place.
DROP TABLE IF EXISTS seed_journal_indexes;
CREATE TABLE seed_journal_indexes AS
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS def,
       con.conname, pg_get_constraintdef(con.oid) AS condef
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  LEFT JOIN pg_constraint con
    ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid
 WHERE i.indrelid = 'event_journal'::regclass AND :rebuild_indexes = 1;
SELECT CASE WHEN conname IS NOT NULL
            THEN format('ALTER TABLE event_journal DROP CONSTRAINT %I',
                        conname)
            ELSE format('DROP INDEX %I', name) END
  FROM seed_journal_indexes
\gexec
\endif

\if :do_load
SELECT span_from AS seed_from, span_to AS seed_to, id_base AS seed_id_base
  FROM seed_journal_run
\gset
-- Each part its own random sequence (the same for a part every run).
SELECT setseed((:seed + :part) / (:parts + 1)) AS seed_void \gset

-- 4,096 payload bodies (names, companies, addresses, prices) drawn once;
-- each row takes one by a hash of its number and adds its own event id,
-- tenant, time and key: random() per row only for the tenant.
CREATE TEMP TABLE seed_bodies AS
SELECT n,
       '","lead":{"first_name":"' || fname || '","last_name":"' || lname
       || '","email":"' || lower(fname) || '.' || lower(lname) || '@'
       || lower(company) || '.com","phone":"+1-555-' || phone
       || '","company":"' || company || ' Services","source":"' || src
       || '","score":' || score || ',"address":{"street":"' || street
       || ' Main St","city":"' || city || '","postal_code":"' || sku
       || '","country":"US"},"tags":["' || src || '","' || lower(title)
       || '"]' AS lead_body,
       '","job":{"title":"' || title || '","customer":{"id":"cust_'
       || substr(md5(n::text), 1, 12) || '","name":"' || fname || ' '
       || lname || '"},"status":"scheduled","currency":"USD",'
       || '"line_items":[{"sku":"svc-' || sku || '","description":"' || title
       || ' visit","quantity":1,"unit_price":' || price || '}],"total":'
       || price AS job_body,
       src
  FROM (
    SELECT n,
           (ARRAY['Ada','Grace','Alan','Linus','Barbara','Edsger','Donald',
                  'Margaret','Ken','Frances'])[1 + floor(random() * 10)::int]
             AS fname,
           (ARRAY['Lovelace','Hopper','Turing','Torvalds','Liskov',
                  'Dijkstra','Knuth','Hamilton','Thompson','Allen'])
             [1 + floor(random() * 10)::int] AS lname,
           (ARRAY['Acme','Globex','Initech','Umbrella','Hooli','Vandelay',
                  'Stark','Wayne'])[1 + floor(random() * 8)::int] AS company,
           (ARRAY['Roof repair','Plumbing','HVAC tune-up','Window cleaning',
                  'Electrical','Landscaping'])[1 + floor(random() * 6)::int]
             AS title,
           (ARRAY['web','referral','phone','ads','partner'])
             [1 + floor(random() * 5)::int] AS src,
           (ARRAY['Austin','Denver','Portland','Boston','Chicago','Miami'])
             [1 + floor(random() * 6)::int] AS city,
           lpad(floor(random() * 1000)::int::text, 3, '0') || '-'
             || lpad(floor(random() * 10000)::int::text, 4, '0') AS phone,
           floor(random() * 101)::int AS score,
           100 + floor(random() * 9900)::int AS street,
           lpad(floor(random() * 100000)::int::text, 5, '0') AS sku,
           round((50 + random() * 950)::numeric, 2) AS price
      FROM generate_series(0, 4095) AS n
  ) AS p;
CREATE UNIQUE INDEX ON seed_bodies (n);
ANALYZE seed_bodies;

-- One statement per day of rows: g is the row's number in the whole seed
-- (0 .. rows-1), which fixes its time, topic, partition, offset and body.
-- The rows reach the insert in generate_series's order (the body lookup is
-- a hash join probed in that order, no sort), so ids follow received_at.
SELECT format($f$
INSERT INTO event_journal
  (id, tenant_id, topic, partition, "offset", key, headers, payload,
   kafka_timestamp, received_at, payload_raw) OVERRIDING SYSTEM VALUE
SELECT %8$s + 1 + g, tenant, topic, part, off, convert_to(ekey, 'UTF8'),
       jsonb_build_array(
         jsonb_build_object('key', 'source', 'value', 'crm-' || src),
         jsonb_build_object('key', 'trace_id', 'value', h)),
       raw::jsonb, at - make_interval(secs => (g %% 2000) / 1000.0), at, raw
FROM (
  SELECT r.*, b.src,
         '{"event_id":"' || h::uuid || '","event_type":"'
         || CASE WHEN job THEN 'job' ELSE 'lead' END || '.created",'
         || '"tenant_id":"' || tenant || '","occurred_at":"'
         || to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
         || CASE WHEN job THEN b.job_body ELSE b.lead_body END
         || ',"id":"' || ekey || '"}}' AS raw
  FROM (
    SELECT g, h,
           'tenant-' || lpad(floor(%2$s * random() ^ 3)::int::text, 4, '0')
             AS tenant,
           (g / 12) %% 2 = 1 AS job,
           CASE (g / 12) %% 2 WHEN 0 THEN 'apexflow.leads.created'
                              ELSE 'apexflow.jobs.created' END AS topic,
           (g %% 12)::int AS part,
           g / 24 AS off,
           %3$L::timestamptz
             + (%4$L::timestamptz - %3$L::timestamptz) * (g::float8 / %5$s)
             AS at,
           CASE (g / 12) %% 2 WHEN 0 THEN 'lead_' ELSE 'job_' END
             || substr(h, 1, 16) AS ekey
    FROM generate_series(%6$s::bigint, %7$s::bigint) AS g,
         LATERAL md5(g::text) AS h
  ) AS r
  JOIN seed_bodies AS b ON b.n = (r.g * 2654435761) %% 4096
) AS e
$f$, NULL, :tenants, :'seed_from', :'seed_to', :rows,
   d * :rows / :days, (d + 1) * :rows / :days - 1, :seed_id_base)
FROM generate_series(0::bigint, :days - 1) AS d
WHERE (d + 1) * :rows / :days - 1 >= d * :rows / :days
  AND d % :parts = :part
ORDER BY d
\gexec
\endif

\if :do_finish
SELECT t0 AS seed_t0, id_base AS seed_max_id_before,
       extract(epoch FROM clock_timestamp()) AS seed_t_rows
  FROM seed_journal_run \gset
SELECT CASE WHEN conname IS NOT NULL
            THEN format('ALTER TABLE event_journal ADD CONSTRAINT %I %s',
                        conname, condef)
            ELSE replace(def, ' ON ONLY ', ' ON ') END
  FROM seed_journal_indexes
\gexec
SELECT CASE WHEN max(id) IS NULL THEN 0
            ELSE setval(:'seed_seq', max(id)) END AS seed_void
  FROM event_journal \gset
SELECT extract(epoch FROM clock_timestamp()) AS seed_t1 \gset
SELECT round((:seed_t_rows - :seed_t0)::numeric, 1) AS seed_rows_s,
       round((:seed_t1 - :seed_t_rows)::numeric, 1) AS seed_index_s,
       count(*) AS seed_index_count
  FROM seed_journal_indexes \gset
DROP TABLE seed_journal_indexes;
DROP TABLE seed_journal_run;
\echo seed_journal: rows inserted in :seed_rows_s s, :seed_index_count indexes built in :seed_index_s s
SELECT count(*) AS seed_rows FROM event_journal
 WHERE id > :seed_max_id_before \gset
SELECT round(:seed_rows / greatest(:seed_t1 - :seed_t0, 0.001)) AS seed_rps,
       round((:seed_t1 - :seed_t0)::numeric, 1) AS seed_s
\gset
\echo seed_journal: rows=:seed_rows seconds=:seed_s rows_per_s=:seed_rps
SELECT 'seed_journal: partitions=' || count(*) FROM journal_partitions
 WHERE state = 'attached';
SELECT 'seed_journal: size=' || pg_size_pretty(sum(pg_total_relation_size(
         format('%I', name)::regclass)))
  FROM journal_partitions WHERE state = 'attached';
-- The tenants a benchmark uses: the largest and one of the smallest that has
-- rows on every few days.
SELECT 'seed_journal: tenant ' || tenant_id || ' rows=' || count(*)
  FROM event_journal WHERE tenant_id IN ('tenant-0000', 'tenant-0001',
                                         'tenant-1500', 'tenant-1999')
 GROUP BY tenant_id ORDER BY tenant_id;
\endif
