// The partitioned journal (issue 13) against a throwaway PostgreSQL:
// partitions created ahead (simulated clock across a month end, a clock that
// jumps, the interval changed), the ingest path's partition check, retention
// dropping whole partitions (and finishing a half-done drop), ids of dropped
// partitions `gone`, and the upgrade of a pre-partition database.
#include "storage/dlq_store.hpp"
#include "storage/journal.hpp"
#include "storage/journal_reader.hpp"
#include "storage/migrations.hpp"
#include "storage/partitions.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <ctime>
#include <map>
#include <thread>

using namespace ces;
using namespace ces::test;
using storage::journal_partition;
using storage::journal_partitions;

namespace {

using clock_point = std::chrono::system_clock::time_point;

/// A UTC time.
clock_point utc(int y, int mon, int d, int h = 0, int min = 0) {
  std::tm tm{};
  tm.tm_year = y - 1900;
  tm.tm_mon = mon - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = min;
  return std::chrono::system_clock::from_time_t(timegm(&tm));
}

/// Overlapping attached partitions in journal_partitions (must be 0).
long overlaps(const std::string& url) {
  return count(url, "SELECT count(*) FROM journal_partitions a"
                    " JOIN journal_partitions b ON a.id < b.id"
                    " AND a.state = 'attached' AND b.state = 'attached'"
                    " AND a.range_from < b.range_to"
                    " AND b.range_from < a.range_to");
}

/// Attached rows of journal_partitions that are not partitions of
/// event_journal, and partitions not recorded as attached (must be 0).
long catalog_mismatch(const std::string& url) {
  return count(url, "SELECT count(*) FROM (SELECT c.relname::text"
                    " FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                    " WHERE i.inhparent = 'event_journal'::regclass"
                    " AND NOT i.inhdetachpending"
                    " EXCEPT SELECT name FROM journal_partitions"
                    " WHERE state = 'attached') x")
         + count(url, "SELECT count(*) FROM (SELECT name FROM"
                      " journal_partitions WHERE state = 'attached'"
                      " EXCEPT SELECT c.relname::text FROM pg_inherits i"
                      " JOIN pg_class c ON c.oid = i.inhrelid"
                      " WHERE i.inhparent = 'event_journal'::regclass) x");
}

/// Attached partitions holding time `ts` (SQL timestamptz literal).
long holders(const std::string& url, const std::string& ts) {
  return count(url, "SELECT count(*) FROM journal_partitions"
                    " WHERE state = 'attached' AND range_from <= timestamptz '"
                      + ts + "' AND range_to > timestamptz '" + ts + "'");
}

/// Inserts a journal row received at `ts`; returns its id.
int64_t insert_at(const std::string& url, const std::string& ts,
                  const std::string& tenant = "acme") {
  return std::stoll(
    scalar(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
                " \"offset\", payload, received_at) VALUES ('" + tenant
                  + "', 'crm', 0, 0, '{\"n\": 1}', timestamptz '" + ts
                  + "') RETURNING id"));
}

/// The name of the attached partition holding now().
std::string current_partition(const std::string& url) {
  return scalar(url, "SELECT name FROM journal_partitions"
                     " WHERE state = 'attached' AND range_from <= now()"
                     " AND range_to > now()");
}

/// The clock jumped past the partitions made ahead: the partition of now()
/// is not there (dropped, as retention records it).
void lose_current_partition(const std::string& url) {
  auto name = current_partition(url);
  REQUIRE_FALSE(name.empty());
  exec(url, "DROP TABLE " + name + ";"
            " UPDATE journal_partitions SET state = 'dropped',"
            " dropped_at = now() WHERE name = '" + name + "'");
  REQUIRE(current_partition(url).empty());
}

const journal_partition* find(const std::vector<journal_partition>& ps,
                              const std::string& name) {
  for (auto& p : ps)
    if (p.name == name)
      return &p;
  return nullptr;
}

} // namespace

TEST_CASE("migrate creates today's and tomorrow's partitions",
          "[partitions]") {
  auto url = migrated_db();
  CHECK_FALSE(current_partition(url).empty());
  CHECK(count(url, "SELECT count(*) FROM journal_partitions WHERE"
                   " state = 'attached' AND range_from <= now()"
                   " + interval '1 day' AND range_to > now()"
                   " + interval '1 day'")
        == 1);
  CHECK(catalog_mismatch(url) == 0);
  // A row without received_at lands in today's partition.
  auto id = std::to_string(
    std::stoll(scalar(url, "INSERT INTO event_journal (tenant_id, topic,"
                           " partition, \"offset\", payload) VALUES"
                           " ('acme', 'crm', 0, 0, '{}') RETURNING id")));
  CHECK(scalar(url, "SELECT tableoid::regclass::text FROM event_journal"
                    " WHERE id = " + id)
        == current_partition(url));
}

TEST_CASE("ensure_ahead across a month end with a simulated clock",
          "[partitions]") {
  auto url = migrated_db();
  journal_partitions p{url};

  SECTION("daily partitions at Jan 31 23:30 UTC") {
    // [Jan 30 23:30, Feb 3 23:30]: Jan 30, Jan 31, Feb 1, Feb 2, Feb 3.
    CHECK(p.ensure_ahead("day", 3, utc(2031, 1, 31, 23, 30)) == 5);
    CHECK(p.ensure_ahead("day", 3, utc(2031, 1, 31, 23, 30)) == 0);
    auto all = p.list();
    auto jan31 = find(all, "event_journal_20310131");
    REQUIRE(jan31 != nullptr);
    CHECK(jan31->range_from == "2031-01-31T00:00:00.000000Z");
    CHECK(jan31->range_to == "2031-02-01T00:00:00.000000Z");
    CHECK(jan31->state == "attached");
    REQUIRE(find(all, "event_journal_20310203") != nullptr);
    CHECK(find(all, "event_journal_20310204") == nullptr);
    // Rows on both sides of the boundary insert.
    insert_at(url, "2031-01-31 23:59:59.999999+00");
    insert_at(url, "2031-02-01 00:00:00+00");
    CHECK(scalar(url, "SELECT string_agg(tableoid::regclass::text, ','"
                      " ORDER BY received_at) FROM event_journal")
          == "event_journal_20310131,event_journal_20310201");
  }
  SECTION("monthly partitions at Jan 31 23:30 UTC") {
    // [Dec 31 23:30, Apr 30 23:30]: Dec, Jan, Feb, Mar, Apr.
    CHECK(p.ensure_ahead("month", 3, utc(2031, 1, 31, 23, 30)) == 5);
    auto all = p.list();
    auto feb = find(all, "event_journal_20310201");
    REQUIRE(feb != nullptr);
    CHECK(feb->range_to == "2031-03-01T00:00:00.000000Z");
    REQUIRE(find(all, "event_journal_20310401") != nullptr);
    insert_at(url, "2031-01-31 23:59:59.999999+00");
    insert_at(url, "2031-02-01 00:00:00+00");
    insert_at(url, "2031-02-28 23:59:59+00");
    insert_at(url, "2031-03-01 00:00:00+00");
    CHECK(count(url, "SELECT count(*) FROM event_journal") == 4);
  }
  SECTION("a clock that jumps forward, then back") {
    CHECK(p.ensure_ahead("day", 3, utc(2031, 1, 31, 23, 30)) == 5);
    CHECK(p.ensure_ahead("day", 3, utc(2032, 6, 15, 12)) == 5);
    CHECK(p.ensure_ahead("day", 3, utc(2031, 2, 2, 12)) == 2); // Feb 4, 5
    CHECK(p.ensure_ahead("day", 3, utc(2031, 1, 31, 23, 30)) == 0);
    for (auto ts : {"2031-01-31 23:59:59+00", "2031-02-05 23:00:00+00",
                    "2032-06-14 00:00:00+00", "2032-06-18 23:59:59+00"}) {
      CHECK(holders(url, ts) == 1);
      insert_at(url, ts);
    }
    CHECK(holders(url, "2032-06-19 00:00:00+00") == 0);
  }
  SECTION("changing the interval never makes partitions overlap") {
    // Days in the middle of March, then months around them, then days.
    CHECK(p.ensure_ahead("day", 1, utc(2031, 3, 15, 12)) == 3);
    // Months Feb..Jun: March is clipped around the days 14..16.
    CHECK(p.ensure_ahead("month", 2, utc(2031, 4, 10)) > 0);
    CHECK(holders(url, "2031-03-01 00:00:00+00") == 1);
    CHECK(holders(url, "2031-03-15 00:00:00+00") == 1);
    CHECK(holders(url, "2031-03-31 23:59:59+00") == 1);
    CHECK(scalar(url, "SELECT name FROM journal_partitions WHERE"
                      " state = 'attached' AND range_from = timestamptz"
                      " '2031-03-17 00:00:00+00'")
          == "event_journal_20310317");
    CHECK(scalar(url, "SELECT range_to = timestamptz '2031-04-01 00:00+00'"
                      " FROM journal_partitions WHERE name ="
                      " 'event_journal_20310317'")
          == "t");
    // Back to days after the months: the months are there already.
    CHECK(p.ensure_ahead("day", 3, utc(2031, 5, 31, 23)) == 0);
    CHECK(p.ensure_ahead("day", 3, utc(2031, 6, 29, 23)) == 2); // Jul 1, 2
    // [Jun 1, Aug 1] (both ends included): Jul 3 .. Aug 1, and August.
    CHECK(p.ensure_ahead("month", 1, utc(2031, 7, 1)) == 2);
    CHECK(scalar(url, "SELECT name FROM journal_partitions"
                      " WHERE range_from = timestamptz '2031-07-03 00:00+00'")
          == "event_journal_20310703");
    for (auto ts : {"2031-03-01 00:00:00+00", "2031-03-14 10:00:00+00",
                    "2031-03-31 23:59:59+00", "2031-07-02 23:59:59+00",
                    "2031-07-03 00:00:00+00", "2031-08-31 23:59:59+00"})
      insert_at(url, ts);
  }
  CHECK(overlaps(url) == 0);
  CHECK(catalog_mismatch(url) == 0);
}

TEST_CASE("ensure_ahead refuses a bad interval", "[partitions]") {
  auto url = migrated_db();
  journal_partitions p{url};
  CHECK_THROWS_AS(p.ensure_ahead("week", 3), std::invalid_argument);
  CHECK_THROWS_AS(p.ensure_ahead("day", -1), std::invalid_argument);
  CHECK_THROWS_AS(storage::journal_writer(url, "c1", true, "year"),
                  std::invalid_argument);
  // The server's clock: the partitions of the next 3 days.
  p.ensure_ahead("day", 3);
  CHECK(count(url, "SELECT count(*) FROM journal_partitions WHERE"
                   " state = 'attached' AND range_from <= now()"
                   " + interval '3 days' AND range_to > now()"
                   " + interval '3 days'")
        == 1);
}

TEST_CASE("ensure_ahead on an unreachable database is an infra_error",
          "[partitions]") {
  journal_partitions p{"postgresql://ces:secret-pw@127.0.0.1:1/none"};
  try {
    p.ensure_ahead("day", 3);
    FAIL("no error");
  } catch (const storage::infra_error& e) {
    CHECK(std::string{e.what()}.find("secret-pw") == std::string::npos);
  }
}

TEST_CASE("a batch creates the partition of now() when it is missing",
          "[partitions]") {
  auto url = migrated_db();
  lose_current_partition(url);
  for (auto interval : {"day", "month"}) {
    DYNAMIC_SECTION("interval " << interval) {
      storage::journal_writer w{url, "cluster-1", true, interval};
      auto out = w.write(good_batch("crm", 0, 0, 5));
      CHECK(find_count(out.journalled, "crm") == 5);
      CHECK(out.dead_lettered.empty());
      CHECK(count(url, "SELECT count(*) FROM event_journal") == 5);
      CHECK_FALSE(current_partition(url).empty());
      CHECK(holders(url, "now") == 1);
      // A month partition is clipped to tomorrow's daily one.
      CHECK(overlaps(url) == 0);
      CHECK(catalog_mismatch(url) == 0);
      // The next batch finds it.
      out = w.write(good_batch("crm", 0, 5, 5));
      CHECK(find_count(out.journalled, "crm") == 5);
    }
  }
}

TEST_CASE("a DLQ retry creates the partition of now() when it is missing",
          "[partitions]") {
  auto url = migrated_db();
  lose_current_partition(url);
  auto id = scalar(url, "INSERT INTO event_dlq (topic, partition, \"offset\","
                        " payload, tenant_id, error_class, error) VALUES"
                        " ('crm', 0, 1, convert_to('{\"tenant_id\": \"acme\"}',"
                        " 'UTF8'), 'acme', 'db_rejected', 'x') RETURNING id");
  storage::dlq_store s{url};
  requester who;
  who.principal = "ops";
  who.role = "admin";
  who.scope = every_tenant;
  auto out = s.retry_journal(std::stoll(id), std::nullopt, who);
  CHECK(out.outcome == storage::dlq_outcome::ok);
  CHECK(count(url, "SELECT count(*) FROM event_journal WHERE dlq_id = " + id)
        == 1);
  CHECK(holders(url, "now") == 1);
}

TEST_CASE("drop_expired drops whole old partitions and records their ids",
          "[partitions]") {
  auto url = migrated_db();
  journal_partitions p{url};
  // Daily partitions Dec 31 2030 .. Jan 11 2031.
  CHECK(p.ensure_ahead("day", 10, utc(2031, 1, 1, 12)) == 12);
  std::vector<int64_t> jan2, jan3, jan8;
  for (int i = 0; i < 3; ++i)
    jan2.push_back(insert_at(url, "2031-01-02 1" + std::to_string(i)
                                    + ":00:00+00"));
  for (int i = 0; i < 2; ++i)
    jan3.push_back(insert_at(url, "2031-01-03 0" + std::to_string(i)
                                    + ":00:00+00"));
  for (int i = 0; i < 4; ++i)
    jan8.push_back(insert_at(url, "2031-01-08 0" + std::to_string(i)
                                    + ":00:00+00"));
  auto now = utc(2031, 1, 9, 6); // keep 5 days: ranges ending by Jan 4
  CHECK(p.drop_expired(0, now).empty()); // 0: keep everything
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 9);

  auto dropped = p.drop_expired(5, now);
  auto d2 = find(dropped, "event_journal_20310102");
  REQUIRE(d2 != nullptr);
  CHECK(d2->state == "dropped");
  CHECK(d2->min_id == jan2.front());
  CHECK(d2->max_id == jan2.back());
  CHECK(d2->row_count == 3);
  auto d3 = find(dropped, "event_journal_20310103");
  REQUIRE(d3 != nullptr);
  CHECK(d3->row_count == 2);
  auto d31 = find(dropped, "event_journal_20301231");
  REQUIRE(d31 != nullptr);
  CHECK(d31->row_count == 0);
  CHECK_FALSE(d31->min_id.has_value());
  CHECK(find(dropped, "event_journal_20310104") == nullptr);
  for (auto& d : dropped)
    CHECK(scalar(url, "SELECT to_regclass('" + d.name + "') IS NULL") == "t");
  // Newer partitions and their rows untouched.
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 4);
  CHECK(scalar(url, "SELECT string_agg(id::text, ',' ORDER BY id)"
                    " FROM event_journal")
        == std::to_string(jan8[0]) + "," + std::to_string(jan8[1]) + ","
             + std::to_string(jan8[2]) + "," + std::to_string(jan8[3]));
  CHECK(scalar(url, "SELECT state FROM journal_partitions"
                    " WHERE name = 'event_journal_20310104'")
        == "attached");
  CHECK(scalar(url, "SELECT dropped_at IS NOT NULL FROM journal_partitions"
                    " WHERE name = 'event_journal_20310102'")
        == "t");
  CHECK(catalog_mismatch(url) == 0);
  // Nothing more to drop.
  CHECK(p.drop_expired(5, now).empty());

  // Ids of a dropped partition are `gone`; others are not.
  storage::journal_reader r{url};
  CHECK_FALSE(r.event_by_id(jan2[1]).has_value());
  CHECK(r.event_dropped(jan2[0]));
  CHECK(r.event_dropped(jan2[1]));
  CHECK(r.event_dropped(jan3[1]));
  CHECK_FALSE(r.event_dropped(jan8[0]));
  CHECK(r.event_by_id(jan8[0]).has_value());
  CHECK_FALSE(r.event_dropped(jan8.back() + 1000));
  // Ids keep increasing after a drop.
  CHECK(insert_at(url, "2031-01-09 00:00:00+00") > jan8.back());

  // The list holds the dropped ones with their metadata.
  auto all = p.list();
  auto l2 = find(all, "event_journal_20310102");
  REQUIRE(l2 != nullptr);
  CHECK(l2->state == "dropped");
  CHECK(l2->row_count == 3);
}

TEST_CASE("month partitions with a short retention are not created again",
          "[partitions]") {
  // Review finding: ensure_ahead looks one interval back; with month
  // partitions and 30 days of retention on Mar 31, February ends on Mar 1 =
  // now - 30 days and is dropped: the next round must not create it again
  // (and drop it again, every round).
  auto url = migrated_db();
  journal_partitions p{url};
  auto now = utc(2031, 3, 31, 12);
  p.drop_expired(30, now); // the partitions migrate made for the real today
  CHECK(p.ensure_ahead("month", 1, now) == 3); // Feb, Mar, Apr
  insert_at(url, "2031-02-10 00:00:00+00");
  auto dropped = p.drop_expired(30, now);
  REQUIRE(dropped.size() == 1);
  CHECK(dropped[0].name == "event_journal_20310201");
  for (int round = 0; round < 2; ++round) {
    CHECK(p.ensure_ahead("month", 1, now) == 0);
    CHECK(p.drop_expired(30, now).empty());
  }
  CHECK(count(url, "SELECT count(*) FROM journal_partitions"
                   " WHERE name = 'event_journal_20310201'")
        == 1);
  CHECK(holders(url, "2031-02-10 00:00:00+00") == 0);
  CHECK(holders(url, "2031-03-31 12:00:00+00") == 1);
}

TEST_CASE("a drop left half done is finished by the next call",
          "[partitions]") {
  auto url = migrated_db();
  journal_partitions p{url};
  CHECK(p.ensure_ahead("day", 10, utc(2031, 1, 1, 12)) == 12);
  auto a = insert_at(url, "2031-01-02 10:00:00+00");
  auto b = insert_at(url, "2031-01-03 10:00:00+00");
  auto c = insert_at(url, "2031-01-04 10:00:00+00");
  // As drop_expired records it before detaching.
  auto detaching = [&](const std::string& name, int64_t id) {
    exec(url, "UPDATE journal_partitions SET state = 'detaching',"
              " min_id = " + std::to_string(id) + ", max_id = "
              + std::to_string(id) + ", row_count = 1 WHERE name = '" + name
              + "'");
  };
  // Jan 2: crashed before DETACH; Jan 3: after DETACH, before DROP.
  detaching("event_journal_20310102", a);
  detaching("event_journal_20310103", b);
  exec(url, "ALTER TABLE event_journal DETACH PARTITION"
            " event_journal_20310103 CONCURRENTLY");
  // Jan 4: a DETACH ... CONCURRENTLY interrupted while it waited for an
  // older transaction: the partition stays "detach pending".
  detaching("event_journal_20310104", c);
  {
    pqxx::connection reader{url};
    pqxx::work old{reader};
    old.exec("SELECT count(*) FROM event_journal");
    pqxx::connection conn{url};
    pqxx::nontransaction nt{conn};
    nt.exec("SET statement_timeout = '500ms'");
    CHECK_THROWS(nt.exec("ALTER TABLE event_journal DETACH PARTITION"
                         " event_journal_20310104 CONCURRENTLY"));
    old.commit();
  }
  REQUIRE(scalar(url, "SELECT inhdetachpending FROM pg_inherits WHERE"
                      " inhrelid = 'event_journal_20310104'::regclass")
          == "t");
  // Retention 30 days: the pending drops finish, and only the partitions
  // migrate made for the real today expire.
  auto today = count(url, "SELECT count(*) FROM journal_partitions"
                          " WHERE state = 'attached' AND range_to"
                          " < timestamptz '2030-12-01 00:00+00'");
  auto dropped = p.drop_expired(30, utc(2031, 1, 9));
  REQUIRE(dropped.size() == static_cast<size_t>(3 + today));
  for (auto& [d, id] : std::map<std::string, int64_t>{
         {"event_journal_20310102", a},
         {"event_journal_20310103", b},
         {"event_journal_20310104", c}}) {
    auto x = find(dropped, d);
    REQUIRE(x != nullptr);
    CHECK(x->state == "dropped");
    CHECK(x->min_id == id);
    CHECK(x->row_count == 1);
    CHECK(scalar(url, "SELECT to_regclass('" + d + "') IS NULL") == "t");
  }
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 0);
  CHECK(catalog_mismatch(url) == 0);
  CHECK(p.drop_expired(30, utc(2031, 1, 9)).empty());
  // The day of a clock set back is made again; the day before it, which
  // retention dropped, is not (ensure_ahead never reaches back into a
  // dropped range: a batch of that time would make its own).
  CHECK(p.ensure_ahead("day", 0, utc(2031, 1, 3, 12)) == 1); // Jan 3
  CHECK(overlaps(url) == 0);
}

namespace {

/// A database at schema version 7 (before the partitioned journal), as
/// storage::migrate left it in the releases before 0008.
std::string database_at_version_7() {
  auto url = shared_pg().create_database();
  pqxx::connection c{url};
  pqxx::quiet_errorhandler quiet{c};
  {
    pqxx::nontransaction nt{c};
    nt.exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text,"
            " applied_at timestamptz DEFAULT now())");
  }
  for (auto& m : storage::embedded_migrations()) {
    if (m.version > 7)
      break;
    pqxx::work tx{c};
    tx.exec(m.sql);
    tx.exec("INSERT INTO schema_migrations (version, name) VALUES ("
            + std::to_string(m.version) + ", " + tx.quote(m.name) + ")");
    tx.commit();
  }
  return url;
}

} // namespace

TEST_CASE("an unpartitioned journal upgrades with rows and offsets intact",
          "[upgrade]") {
  auto url = database_at_version_7();
  REQUIRE(scalar(url, "SELECT relkind FROM pg_class"
                      " WHERE relname = 'event_journal'")
          == "r");
  // Rows over several days (one 40 days old), replays, a DLQ retry's row,
  // payload_raw, keys and headers; a rolled-back insert past the last id.
  exec(url, R"(
    INSERT INTO event_journal (tenant_id, topic, partition, "offset", key,
      headers, payload, kafka_timestamp, received_at, payload_raw)
    SELECT 'tenant-' || (g % 3), 'crm', g % 2, g, '\x6b'::bytea,
      '[{"key": "h", "value": "v"}]', jsonb_build_object('n', g),
      timestamptz '2024-05-01 12:00+00',
      now() - (g % 5) * interval '1 day' - g * interval '1 minute',
      '{"n": ' || g || '}'
    FROM generate_series(1, 50) g;
    INSERT INTO event_journal (tenant_id, topic, partition, "offset",
      payload, received_at)
    VALUES ('tenant-0', 'crm', 0, 51, '{"old": true}',
            now() - interval '40 days');
  )");
  auto dlq = scalar(url, "INSERT INTO event_dlq (topic, partition, \"offset\","
                         " payload, tenant_id, error_class, error, status)"
                         " VALUES ('crm', 1, 99, convert_to('{}', 'UTF8'),"
                         " 'tenant-1', 'db_rejected', 'x', 'resolved')"
                         " RETURNING id");
  exec(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
            " \"offset\", payload, replay_of, replay_job, dlq_id) VALUES"
            " ('tenant-1', 'crm', 1, 99, '{}', 3, 7, " + dlq + ");"
            " UPDATE event_dlq SET resolved_event_id = currval("
            "pg_get_serial_sequence('event_journal', 'id')) WHERE id = "
            + dlq + ";"
            " INSERT INTO journal_offsets (cluster_id, topic, partition,"
            " next_offset) VALUES ('k1', 'crm', 0, 52), ('k1', 'crm', 1,"
            " 100), ('k2', 'other', 0, 7)");
  // A rolled-back insert: the sequence is past the last row's id.
  CHECK_THROWS(exec(url, "BEGIN; INSERT INTO event_journal (tenant_id,"
                         " topic, partition, \"offset\", payload) VALUES"
                         " ('t', 'crm', 0, 0, '{}'); SELECT 1/0"));
  auto snapshot_sql =
    "SELECT string_agg(concat_ws('|', id, tenant_id, topic, partition,"
    " \"offset\", encode(key, 'hex'), headers::text, payload::text,"
    " kafka_timestamp, received_at, replay_of, payload_raw, replay_job,"
    " dlq_id), E'\\n' ORDER BY id) FROM event_journal";
  auto before = scalar(url, std::string{snapshot_sql} + "");
  auto offsets_sql = "SELECT string_agg(concat_ws('|', cluster_id, topic,"
                     " partition, next_offset), ',' ORDER BY cluster_id,"
                     " topic, partition) FROM journal_offsets";
  auto offsets_before = scalar(url, offsets_sql);
  auto max_before
    = std::stoll(scalar(url, "SELECT max(id) FROM event_journal"));
  REQUIRE(count(url, "SELECT count(*) FROM event_journal") == 52);

  auto applied = storage::migrate(url);
  REQUIRE_FALSE(applied.empty());
  CHECK(applied.front() == 8);

  CHECK(scalar(url, "SELECT relkind FROM pg_class"
                    " WHERE relname = 'event_journal'")
        == "p");
  CHECK(scalar(url, snapshot_sql) == before);
  CHECK(scalar(url, offsets_sql) == offsets_before);
  CHECK(scalar(url, "SELECT resolved_event_id FROM event_dlq WHERE id = "
                      + dlq)
        == scalar(url, "SELECT id FROM event_journal WHERE dlq_id = " + dlq));
  // Every old row is in a partition covering its day; no row outside.
  CHECK(count(url, "SELECT count(*) FROM event_journal j"
                   " JOIN journal_partitions p"
                   " ON p.name = j.tableoid::regclass::text"
                   " WHERE p.state = 'attached' AND j.received_at >="
                   " p.range_from AND j.received_at < p.range_to")
        == 52);
  CHECK(overlaps(url) == 0);
  CHECK(catalog_mismatch(url) == 0);
  CHECK(holders(url, "now") == 1);
  // A new row: an id above the old max (and the rolled-back one).
  auto fresh = insert_at(url, "now");
  CHECK(fresh > max_before + 1);
  // Reads as before.
  storage::journal_reader r{url};
  auto e = r.event_by_id(max_before);
  REQUIRE(e.has_value());
  CHECK(e->dlq_id == std::stoll(dlq));
  CHECK(e->replay_of == 3);
  auto raw = r.event_by_id(1);
  REQUIRE(raw.has_value());
  CHECK(raw->has_raw);
  CHECK(raw->payload_raw == R"({"n": 1})");
  // The service keeps working on it: a batch, the offsets fence.
  storage::journal_writer w{url, "k1"};
  auto out = w.write(good_batch("crm", 0, 50, 5)); // 50, 51 already stored
  CHECK(find_count(out.skipped, "crm") == 2);
  CHECK(find_count(out.journalled, "crm") == 3);
  CHECK(scalar(url, "SELECT next_offset FROM journal_offsets WHERE"
                    " cluster_id = 'k1' AND topic = 'crm' AND partition = 0")
        == "55");
  // Migrating again is a no-op.
  CHECK(storage::migrate(url).empty());
}

TEST_CASE("an empty unpartitioned journal upgrades with month partitions",
          "[upgrade]") {
  auto url = database_at_version_7();
  exec(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
            " \"offset\", payload) VALUES ('t', 'crm', 0, 0, '{}');"
            " DELETE FROM event_journal");
  auto applied = storage::migrate(url, "month");
  REQUIRE_FALSE(applied.empty());
  CHECK(count(url, "SELECT count(*) FROM journal_partitions") >= 1);
  CHECK(scalar(url, "SELECT bool_and(range_from = date_trunc('month',"
                    " range_from AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"
                    " FROM journal_partitions")
        == "t");
  CHECK(holders(url, "now") == 1);
  CHECK(insert_at(url, "now") == 2); // the sequence continues
}
