// journal_writer, load_offsets and DLQ counts against a throwaway PostgreSQL.
#include "storage/headers_json.hpp"
#include "storage/journal.hpp"
#include "storage/journal_reader.hpp"
#include "storage/validate.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <exception>
#include <thread>

using namespace ces;
using namespace ces::test;
using storage::infra_error;
using storage::journal_writer;

namespace {

const std::string cluster = "ces-test-cluster";

std::vector<std::string> strings(const std::string& url,
                                 const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  std::vector<std::string> out;
  for (auto row : tx.exec(sql))
    out.push_back(row[0].is_null() ? "<null>" : row[0].as<std::string>());
  return out;
}

int64_t stored_offset(const std::string& url, const std::string& topic,
                      int32_t partition) {
  auto v = scalar(url, "SELECT next_offset FROM journal_offsets"
                       " WHERE cluster_id = '" + cluster + "' AND topic = '"
                         + topic + "' AND partition = "
                         + std::to_string(partition));
  return v.empty() ? -1 : std::stoll(v);
}

} // namespace

TEST_CASE("an empty batch is a no-op", "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  CHECK(w.connected());
  auto out = w.write({});
  CHECK(out.offsets.empty());
  CHECK(out.journalled.empty());
  CHECK(count(url, "SELECT count(*) FROM journal_offsets") == 0);
}

TEST_CASE("good, rejected and refused records in one batch", "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  std::vector<checked_record> batch;
  // partition 0: good rows around rows only PostgreSQL refuses.
  batch.push_back(accepted("crm", 0, 10, R"({"tenant_id":"t","n":1})"));
  batch.push_back(accepted("crm", 0, 11, R"({"tenant_id":"t","n":1e1000000})"));
  batch.push_back(accepted("crm", 0, 12, R"({"tenant_id":"t","n":2})"));
  batch.push_back(accepted("crm", 0, 13, R"({"tenant_id":"t","s":"\u0000"})"));
  batch.push_back(accepted("crm", 0, 14, R"({"tenant_id":"t","n":3})"));
  batch.push_back(accepted("crm", 0, 15, "{\"tenant_id\":\"t\",\"s\":\"\xff\"}"));
  batch.push_back(accepted("crm", 0, 16, std::string(100000, '[')
                                           + std::string(100000, ']')));
  batch.push_back(accepted("crm", 0, 17, R"({"tenant_id":"t","n":4})"));
  // partition 1: rejected by validation only.
  batch.push_back(rejected("crm", 1, 0, "", reject_reason::empty_value,
                           "empty value"));
  auto tomb = rejected("crm", 1, 1, "", reject_reason::empty_value, "null");
  tomb.rec.has_value = false;
  batch.push_back(tomb);
  batch.push_back(rejected("crm", 1, 2, "", reject_reason::invalid_json,
                           "bad json"));
  batch.back().rec.value = std::string("not json \xfe\0 at all", 18);
  auto no_tenant = rejected("crm", 1, 3, R"({"x":1})",
                            reject_reason::missing_tenant, "no tenant");
  batch.push_back(no_tenant);
  // another topic, good.
  batch.push_back(accepted("other", 3, 100, R"({"tenant_id":"u"})", "u"));

  auto out = w.write(batch);

  CHECK(find_count(out.journalled, "crm") == 4);
  CHECK(find_count(out.journalled, "other") == 1);
  CHECK(find_count(out.dead_lettered, "crm", "db_rejected") == 4);
  CHECK(find_count(out.dead_lettered, "crm", "empty_value") == 2);
  CHECK(find_count(out.dead_lettered, "crm", "invalid_json") == 1);
  CHECK(find_count(out.dead_lettered, "crm", "missing_tenant") == 1);
  CHECK(out.skipped.empty());
  CHECK(out.isolation_rounds > 0);
  CHECK(out.isolation_rounds <= 12);
  REQUIRE(out.offsets.size() == 3);
  CHECK(out.offsets[0].topic == "crm");
  CHECK(out.offsets[0].partition == 0);
  CHECK(out.offsets[0].next_offset == 18);
  CHECK(out.offsets[1].partition == 1);
  CHECK(out.offsets[1].next_offset == 4);
  CHECK(out.offsets[2].topic == "other");
  CHECK(out.offsets[2].next_offset == 101);

  CHECK(strings(url, "SELECT \"offset\" FROM event_journal WHERE topic = 'crm'"
                     " ORDER BY id")
        == std::vector<std::string>{"10", "12", "14", "17"});
  CHECK(strings(url, "SELECT payload->>'n' FROM event_journal"
                     " WHERE topic = 'crm' ORDER BY id")
        == std::vector<std::string>{"1", "2", "3", "4"});
  CHECK(strings(url, "SELECT \"offset\" || ':' || error_class FROM event_dlq"
                     " WHERE partition = 0 ORDER BY \"offset\"")
        == std::vector<std::string>{"11:db_rejected", "13:db_rejected",
                                    "15:db_rejected", "16:db_rejected"});
  // PostgreSQL's messages, with their SQLSTATE.
  CHECK_THAT(scalar(url, "SELECT error FROM event_dlq WHERE \"offset\" = 11"
                         " AND partition = 0"),
             Catch::Contains("SQLSTATE 22"));
  CHECK_THAT(scalar(url, "SELECT error FROM event_dlq WHERE \"offset\" = 13"
                         " AND partition = 0"),
             Catch::Contains("SQLSTATE 22P05"));
  CHECK_THAT(scalar(url, "SELECT error FROM event_dlq WHERE \"offset\" = 16"
                         " AND partition = 0"),
             Catch::Contains("SQLSTATE 54001"));
  CHECK(scalar(url, "SELECT tenant_id FROM event_dlq WHERE \"offset\" = 11"
                    " AND partition = 0")
        == "t1");
  CHECK(scalar(url, "SELECT encode(payload, 'hex') FROM event_dlq"
                    " WHERE \"offset\" = 15 AND partition = 0")
        == "7b2274656e616e745f6964223a2274222c2273223a22ff227d");
  // Validation rejects: raw bytes, reasons, messages, default columns.
  CHECK(strings(url, "SELECT error_class || ':' || error || ':' ||"
                     " coalesce(encode(payload, 'hex'), 'NULL') || ':' ||"
                     " status || ':' || attempts FROM event_dlq"
                     " WHERE partition = 1 ORDER BY \"offset\"")
        == std::vector<std::string>{
          "empty_value:empty value::pending:1",
          "empty_value:null:NULL:pending:1",
          "invalid_json:bad json:6e6f74206a736f6e20fe002061742061"
          "6c6c:pending:1",
          "missing_tenant:no tenant:7b2278223a317d:pending:1"});
  CHECK(stored_offset(url, "crm", 0) == 18);
  CHECK(stored_offset(url, "crm", 1) == 4);
  CHECK(stored_offset(url, "other", 3) == 101);

  storage::journal_reader dlq{url};
  CHECK(dlq.pending_dlq_count() == 8);
}

TEST_CASE("isolation finds many refused rows among many good ones",
          "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  auto batch = good_batch("crm", 0, 0, 2000);
  std::vector<int64_t> bad;
  for (int64_t o : {0, 1, 2, 777, 1000, 1001, 1500, 1999}) {
    batch[o].rec.value = R"({"tenant_id":"t","n":1e1000000})";
    bad.push_back(o);
  }
  auto out = w.write(batch);
  // PostgreSQL names the refused line: each bad row costs at most three more
  // COPYs (rows before it, the row, rows after it), not a bisection.
  CHECK(out.isolation_rounds <= 3 * bad.size());
  CHECK(find_count(out.journalled, "crm") == 2000 - bad.size());
  CHECK(find_count(out.dead_lettered, "crm", "db_rejected") == bad.size());
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 1992);
  std::vector<std::string> expected;
  for (auto o : bad)
    expected.push_back(std::to_string(o));
  CHECK(strings(url, "SELECT \"offset\" FROM event_dlq ORDER BY \"offset\"")
        == expected);
  // Journal ids follow the offsets.
  CHECK(count(url, "SELECT count(*) FROM (SELECT \"offset\","
                   " lag(\"offset\") OVER (ORDER BY id) AS prev"
                   " FROM event_journal) s WHERE prev >= \"offset\"")
        == 0);
  CHECK(stored_offset(url, "crm", 0) == 2000);
}

TEST_CASE("numbers numeric refuses are invalid_json, without isolation",
          "[journal][numeric]") {
  // As the consumer builds a batch: check_record first. 5,000 events in a row
  // with a number PostgreSQL's numeric refuses (used to reach COPY and be
  // isolated one by one as db_rejected), between good ones.
  auto url = migrated_db();
  journal_writer w{url, cluster};
  const validation_limits limits;
  const char* refused[] = {"1e200000", "-1e131072", "1e-200000", "1.0e-16383",
                           "0e1073741823"};
  std::vector<checked_record> batch;
  int64_t offset = 0;
  auto add = [&](std::string payload) {
    batch.push_back(
      check_record(record("crm", 0, offset++, std::move(payload)), limits));
  };
  add(R"({"tenant_id":"t","n":1e131071})");
  for (int i = 0; i < 5000; ++i)
    add(std::string(R"({"tenant_id":"t","i":)") + std::to_string(i)
        + R"(,"n":)" + refused[i % 5] + "}");
  add(R"({"tenant_id":"t","n":1e-16383})");
  auto out = w.write(batch);
  CHECK(out.isolation_rounds == 0);
  CHECK(find_count(out.journalled, "crm") == 2);
  CHECK(find_count(out.dead_lettered, "crm", "invalid_json") == 5000);
  CHECK(find_count(out.dead_lettered, "crm", "db_rejected") == 0);
  CHECK(count(url, "SELECT count(*) FROM event_dlq"
                   " WHERE error_class = 'invalid_json'"
                   " AND error LIKE 'number at byte %outside PostgreSQL''s"
                   " numeric range%'")
        == 5000);
  CHECK(scalar(url, "SELECT error FROM event_dlq WHERE \"offset\" = 1")
        == "number at byte 27 (1e200000) is outside PostgreSQL's numeric "
           "range: it is too large (200001 digits before the decimal point, "
           "the limit is 131072)");
  CHECK(stored_offset(url, "crm", 0) == 5002);
}

TEST_CASE("a row a trigger refuses is dead-lettered as db_rejected",
          "[journal]") {
  // PL/pgSQL's RAISE EXCEPTION (SQLSTATE P0001) in a trigger on the journal
  // blames the row, not the infrastructure: the row is isolated like one
  // jsonb refuses, the rest of the batch is journalled.
  auto url = migrated_db();
  exec(url, R"(
    CREATE FUNCTION refuse_bad() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.payload ? 'bad' THEN RAISE EXCEPTION 'bad row refused'; END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_bad BEFORE INSERT ON event_journal
      FOR EACH ROW EXECUTE FUNCTION refuse_bad();)");
  journal_writer w{url, cluster};
  auto batch = good_batch("crm", 0, 0, 3);
  batch.push_back(accepted("crm", 0, 3, R"({"tenant_id":"t1","bad":1})"));
  batch.push_back(accepted("crm", 0, 4, R"({"tenant_id":"t1","n":4})"));
  auto out = w.write(batch);
  CHECK(find_count(out.journalled, "crm") == 4);
  CHECK(find_count(out.dead_lettered, "crm", "db_rejected") == 1);
  CHECK(scalar(url, "SELECT \"offset\" FROM event_dlq") == "3");
  CHECK_THAT(scalar(url, "SELECT error FROM event_dlq"),
             Catch::Contains("bad row refused")
               && Catch::Contains("SQLSTATE P0001"));
  CHECK(w.connected());
}

TEST_CASE("a batch is one transaction", "[journal]") {
  auto url = migrated_db();
  std::vector<checked_record> batch = good_batch("crm", 0, 0, 5);
  batch.push_back(rejected("crm", 0, 5, "x", reject_reason::invalid_json, "x"));
  batch.push_back(accepted("crm", 0, 6, R"({"tenant_id":"t","n":1e1000000})"));

  auto nothing_stored = [&] {
    CHECK(count(url, "SELECT count(*) FROM event_journal") == 0);
    CHECK(count(url, "SELECT count(*) FROM event_dlq") == 0);
    CHECK(count(url, "SELECT count(*) FROM journal_offsets") == 0);
  };

  SECTION("an error raised after the COPY rolls everything back") {
    exec(url, R"(
      CREATE FUNCTION fail_update() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'injected failure'; END $$;
      CREATE TRIGGER fail_update BEFORE UPDATE ON journal_offsets
        FOR EACH ROW EXECUTE FUNCTION fail_update();)");
    journal_writer w{url, cluster};
    CHECK_THROWS_WITH(w.write(batch), Catch::Contains("injected failure")
                                        && Catch::Contains("P0001"));
    nothing_stored();
    CHECK_FALSE(w.connected());
    exec(url, "DROP TRIGGER fail_update ON journal_offsets");
    auto out = w.write(batch);
    CHECK(find_count(out.journalled, "crm") == 5);
  }

  SECTION("a connection lost after the COPY rolls everything back") {
    exec(url, R"(
      CREATE FUNCTION kill_me() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid());
            PERFORM pg_sleep(5); RETURN NEW; END $$;
      CREATE TRIGGER kill_me BEFORE UPDATE ON journal_offsets
        FOR EACH ROW EXECUTE FUNCTION kill_me();)");
    journal_writer w{url, cluster};
    CHECK_THROWS_AS(w.write(batch), infra_error);
    CHECK_FALSE(w.connected());
    nothing_stored();
    exec(url, "DROP TRIGGER kill_me ON journal_offsets");
    auto out = w.write(batch);
    CHECK(find_count(out.journalled, "crm") == 5);
  }

  SECTION("a connection lost during COMMIT is an infra error") {
    // A deferred constraint trigger runs inside COMMIT: the client sees the
    // connection drop with the outcome unknown (pqxx::in_doubt_error).
    exec(url, R"(
      CREATE FUNCTION kill_me() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_terminate_backend(pg_backend_pid());
            PERFORM pg_sleep(5); RETURN NULL; END $$;
      CREATE CONSTRAINT TRIGGER kill_me AFTER UPDATE ON journal_offsets
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION kill_me();)");
    journal_writer w{url, cluster};
    CHECK_THROWS_WITH(w.write(batch), Catch::Contains("commit outcome unknown"));
    CHECK_FALSE(w.connected());
    nothing_stored();
    exec(url, "DROP TRIGGER kill_me ON journal_offsets");
    auto out = w.write(batch);
    CHECK(find_count(out.journalled, "crm") == 5);
  }

  CHECK(count(url, "SELECT count(*) FROM event_journal") == 5);
  CHECK(count(url, "SELECT count(*) FROM event_dlq") == 2);
  CHECK(stored_offset(url, "crm", 0) == 7);
}

TEST_CASE("the offset fence journals each offset once", "[journal][fence]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};

  SECTION("the same batch twice") {
    auto batch = good_batch("crm", 0, 0, 10);
    batch.push_back(rejected("crm", 0, 10, "", reject_reason::empty_value, ""));
    auto first = w.write(batch);
    CHECK(find_count(first.journalled, "crm") == 10);
    auto second = w.write(batch);
    CHECK(second.journalled.empty());
    CHECK(second.dead_lettered.empty());
    CHECK(find_count(second.skipped, "crm") == 11);
    REQUIRE(second.offsets.size() == 1);
    CHECK(second.offsets[0].next_offset == 11);
    CHECK(count(url, "SELECT count(*) FROM event_journal") == 10);
    CHECK(count(url, "SELECT count(*) FROM event_dlq") == 1);
  }

  SECTION("overlapping batches") {
    w.write(good_batch("crm", 0, 0, 100));
    auto out = w.write(good_batch("crm", 0, 50, 100));
    CHECK(find_count(out.skipped, "crm") == 50);
    CHECK(find_count(out.journalled, "crm") == 50);
    CHECK(out.offsets.at(0).next_offset == 150);
    CHECK(count(url, "SELECT count(*) FROM event_journal") == 150);
    CHECK(count(url, "SELECT count(DISTINCT \"offset\") FROM event_journal")
          == 150);
  }

  SECTION("an older batch after a newer one") {
    w.write(good_batch("crm", 0, 100, 10));
    auto out = w.write(good_batch("crm", 0, 0, 10));
    CHECK(find_count(out.skipped, "crm") == 10);
    // The stored offset never goes back.
    CHECK(out.offsets.at(0).next_offset == 110);
    CHECK(stored_offset(url, "crm", 0) == 110);
  }

  SECTION("duplicates inside one batch") {
    auto batch = good_batch("crm", 0, 0, 5);
    auto again = good_batch("crm", 0, 3, 5);
    batch.insert(batch.end(), again.begin(), again.end());
    auto out = w.write(batch);
    CHECK(find_count(out.journalled, "crm") == 8);
    CHECK(find_count(out.skipped, "crm") == 2);
  }

  SECTION("two group members writing the same partition concurrently") {
    // Both write overlapping batches of the partition at the same time, as
    // during a rebalance (each from offset 0, with its own batch sizes); each
    // offset must be journalled exactly once.
    journal_writer other{url, cluster};
    std::exception_ptr err_a, err_b;
    auto run = [&](journal_writer& jw, int64_t step, int64_t size,
                   std::exception_ptr& err) {
      try {
        for (int64_t first = 0; first + size <= 2025; first += step)
          jw.write(good_batch("crm", 0, first, size));
      } catch (...) {
        err = std::current_exception();
      }
    };
    std::thread ta{[&] { run(w, 50, 75, err_a); }};
    std::thread tb{[&] { run(other, 40, 65, err_b); }};
    ta.join();
    tb.join();
    REQUIRE_FALSE(err_a);
    REQUIRE_FALSE(err_b);
    auto total = count(url, "SELECT count(*) FROM event_journal");
    CHECK(total == count(url, "SELECT count(DISTINCT \"offset\")"
                              " FROM event_journal"));
    CHECK(total == 2025);
    CHECK(stored_offset(url, "crm", 0) == total);
  }
}

TEST_CASE("a writer whose connection was killed reconnects",
          "[journal][fence]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  w.write(good_batch("crm", 0, 0, 10));
  CHECK(terminate_others(url) >= 1);
  CHECK_THROWS_AS(w.write(good_batch("crm", 0, 10, 10)), infra_error);
  CHECK_FALSE(w.connected());
  auto out = w.write(good_batch("crm", 0, 10, 10));
  CHECK(w.connected());
  CHECK(find_count(out.journalled, "crm") == 10);
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 20);
  CHECK(stored_offset(url, "crm", 0) == 20);
}

TEST_CASE("columns land as sent", "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  std::vector<checked_record> batch;

  auto a = accepted("crm.leads", 7, 123456789012LL,
                    R"({"tenant_id":"acme","x":[1,2,3]})", "acme");
  a.rec.has_key = true;
  a.rec.key = std::string("k\0\xff\\\t\n", 6);
  a.rec.headers = {
    {"trace", "abc", true},
    {"bin", std::string("\xff\xfe\0x", 4), true},
    {"empty", "", true},
    {"none", "", false},
    {std::string("\xc3\x28", 2), "bad key", true},
    {"quote\"\\", "tab\tnew\nline \xe2\x82\xac", true},
  };
  a.rec.timestamp_ms = 1709294400250; // 2024-03-01T12:00:00.250Z
  // A recorded replay of event 42 (see the provenance tests below).
  a.replay_of = 42;
  a.replay_id = "r-42";
  exec(url, "INSERT INTO replays (replay_id, event_id, tenant_id, topic,"
            " principal) VALUES ('r-42', 42, 'acme', 'crm.leads', 'ops')");
  batch.push_back(a);

  auto b = accepted("crm.leads", 7, 123456789013LL, R"({"tenant_id":"acme"})",
                    "acme");
  b.rec.has_key = true; // empty key
  b.rec.timestamp_ms = 0;
  batch.push_back(b);

  auto c = accepted("crm.leads", 7, 123456789014LL, R"({"tenant_id":"acme"})",
                    "acme");
  batch.push_back(c); // no key, no headers, no timestamp, no replay

  auto d = rejected("crm.leads", 7, 123456789015LL, "{", reject_reason::invalid_json,
                    "unexpected end");
  d.rec.has_key = true;
  d.rec.key = "dkey";
  d.rec.headers = a.rec.headers;
  d.rec.timestamp_ms = 1709294400250;
  d.tenant_id = "acme";
  batch.push_back(d);

  w.write(batch);

  auto row = [&](int64_t offset, const std::string& expr) {
    return scalar(url, "SELECT " + expr + " FROM event_journal WHERE \"offset\" = "
                         + std::to_string(offset));
  };
  CHECK(row(123456789012, "tenant_id || '/' || topic || '/' || partition")
        == "acme/crm.leads/7");
  CHECK(row(123456789012, "encode(key, 'hex')") == "6b00ff5c090a");
  CHECK(row(123456789012,
            "to_char(kafka_timestamp AT TIME ZONE 'UTC',"
            " 'YYYY-MM-DD HH24:MI:SS.MS')")
        == "2024-03-01 12:00:00.250");
  CHECK(row(123456789012, "(extract(epoch FROM kafka_timestamp) * 1000)::bigint")
        == "1709294400250");
  CHECK(row(123456789012, "replay_of") == "42");
  CHECK(row(123456789012, "payload->'x'->>2") == "3");
  CHECK(row(123456789012, "received_at IS NOT NULL") == "t");
  CHECK(row(123456789012, "headers->1->>'value_b64'") == "//4AeA==");
  CHECK(row(123456789012, "headers->3->'value'") == "null");
  CHECK(row(123456789012, "headers->4->>'key_b64'") == "wyg=");
  CHECK(row(123456789012, "headers->5->>'value'")
        == "tab\tnew\nline \xe2\x82\xac");
  // The stored JSON decodes back to the headers.
  auto decoded = storage::headers_from_json(row(123456789012, "headers::text"));
  REQUIRE(decoded.size() == a.rec.headers.size());
  for (size_t i = 0; i < decoded.size(); ++i) {
    CHECK(decoded[i].key == a.rec.headers[i].key);
    CHECK(decoded[i].value == a.rec.headers[i].value);
    CHECK(decoded[i].has_value == a.rec.headers[i].has_value);
  }

  CHECK(row(123456789013, "encode(key, 'hex')") == "");
  CHECK(row(123456789013, "key IS NOT NULL") == "t");
  CHECK(row(123456789013, "kafka_timestamp = 'epoch'::timestamptz") == "t");
  CHECK(row(123456789014, "key IS NULL") == "t");
  CHECK(row(123456789014, "kafka_timestamp IS NULL") == "t");
  CHECK(row(123456789014, "replay_of IS NULL") == "t");
  CHECK(row(123456789014, "headers::text") == "[]");

  auto dlq = [&](const std::string& expr) {
    return scalar(url, "SELECT " + expr + " FROM event_dlq");
  };
  CHECK(dlq("topic || '/' || partition || '/' || \"offset\"")
        == "crm.leads/7/123456789015");
  CHECK(dlq("encode(key, 'hex')") == "646b6579");
  CHECK(dlq("encode(payload, 'hex')") == "7b");
  CHECK(dlq("tenant_id") == "acme");
  CHECK(dlq("error_class || ': ' || error") == "invalid_json: unexpected end");
  CHECK(dlq("(extract(epoch FROM kafka_timestamp) * 1000)::bigint")
        == "1709294400250");
  CHECK(storage::headers_from_json(dlq("headers::text")).size() == 6);
  CHECK(dlq("updated_at IS NOT NULL AND received_at IS NOT NULL") == "t");
}

TEST_CASE("payload text round-trips through COPY", "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  std::vector<std::string> payloads = {
    "{\"tenant_id\":\"t\",\"s\":\"tab\\there\"}",
    "{\"tenant_id\":\"t\",\"s\":\"back\\\\slash \\\\N \\\\. \\\\x41\"}",
    "{\n\t\"tenant_id\" :\r\n \"t\",\t\"n\":\n1.50}\n",
    "{\"tenant_id\":\"t\",\"u\":\"\\u00e9\\ud83d\\ude00 \xc3\xa9 \xf0\x9f\x98\x80\"}",
    "{\"tenant_id\":\"t\",\"q\":\"\\\"\\/\\b\\f\\n\\r\\t\"}",
    "{\"tenant_id\":\"t\",\"s\":\"\\\\.\"}",
  };
  std::vector<checked_record> batch;
  for (size_t i = 0; i < payloads.size(); ++i)
    batch.push_back(accepted("crm", 0, static_cast<int64_t>(i), payloads[i]));
  auto tenant = accepted("crm", 0, 100, R"({"tenant_id":"a\tb"})",
                         "a\tb\\c\nd");
  batch.push_back(tenant);
  auto out = w.write(batch);
  CHECK(find_count(out.journalled, "crm") == payloads.size() + 1);
  CHECK(out.dead_lettered.empty());

  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto r = tx.exec_params("SELECT payload = $1::jsonb, payload::text,"
                            " $1::jsonb::text FROM event_journal"
                            " WHERE \"offset\" = $2",
                            payloads[i], static_cast<int64_t>(i));
    REQUIRE(r.size() == 1);
    INFO(payloads[i]);
    CHECK(r[0][1].as<std::string>() == r[0][2].as<std::string>());
    CHECK(r[0][0].as<bool>());
  }
  CHECK(tx.exec1("SELECT tenant_id FROM event_journal WHERE \"offset\" = 100")[0]
          .as<std::string>()
        == "a\tb\\c\nd");
}

TEST_CASE("load_offsets returns what was committed", "[journal]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  std::vector<checked_record> batch = good_batch("a", 0, 0, 3);
  for (auto& r : good_batch("a", 2, 40, 2))
    batch.push_back(r);
  for (auto& r : good_batch("b", 1, 7, 1))
    batch.push_back(r);
  for (auto& r : good_batch("c", 0, 0, 1))
    batch.push_back(r);
  auto out = w.write(batch);

  auto loaded = storage::load_offsets(url, cluster, {"a", "b"});
  REQUIRE(loaded.size() == 3);
  CHECK((loaded[0].topic == "a" && loaded[0].partition == 0
         && loaded[0].next_offset == 3));
  CHECK((loaded[1].topic == "a" && loaded[1].partition == 2
         && loaded[1].next_offset == 42));
  CHECK((loaded[2].topic == "b" && loaded[2].partition == 1
         && loaded[2].next_offset == 8));
  // The outcome reported the same offsets.
  REQUIRE(out.offsets.size() == 4);
  for (size_t i = 0; i < loaded.size(); ++i) {
    CHECK(out.offsets[i].topic == loaded[i].topic);
    CHECK(out.offsets[i].partition == loaded[i].partition);
    CHECK(out.offsets[i].next_offset == loaded[i].next_offset);
  }
  CHECK(storage::load_offsets(url, "another-cluster", {"a", "b"}).empty());
  CHECK(storage::load_offsets(url, cluster, {}).empty());
  CHECK(storage::load_offsets(url, cluster, {"zzz"}).empty());
}

TEST_CASE("pending DLQ entries are counted, across a reconnect",
          "[journal][dlq]") {
  auto url = migrated_db();
  storage::journal_reader dlq{url};
  CHECK(dlq.pending_dlq_count() == 0);
  journal_writer w{url, cluster};
  std::vector<checked_record> batch;
  for (int64_t o = 0; o < 5; ++o)
    batch.push_back(rejected("crm", 0, o, "", reject_reason::empty_value, ""));
  w.write(batch);
  CHECK(dlq.pending_dlq_count() == 5);
  exec(url, "UPDATE event_dlq SET status = 'resolved' WHERE \"offset\" < 2");
  CHECK(dlq.pending_dlq_count() == 3);
  CHECK_THROWS_AS(exec(url, "UPDATE event_dlq SET status = 'bogus'"),
                  pqxx::check_violation);
  terminate_others(url);
  CHECK_THROWS_AS(dlq.pending_dlq_count(), infra_error);
  CHECK_FALSE(dlq.connected());
  CHECK(dlq.pending_dlq_count() == 3);
}

TEST_CASE("a PostgreSQL restart is an infra error, then writes resume",
          "[journal][restart]") {
  // Its own cluster: the shared one stays up for the other tests.
  pg_fixture pg{"restart_test"};
  storage::migrate(pg.url());
  journal_writer w{pg.url(), cluster};
  w.write(good_batch("crm", 0, 0, 10));
  pg.stop("immediate");
  CHECK_THROWS_AS(w.write(good_batch("crm", 0, 10, 10)), infra_error);
  CHECK_THROWS_AS(w.write(good_batch("crm", 0, 10, 10)), infra_error);
  pg.start();
  auto out = w.write(good_batch("crm", 0, 10, 10));
  CHECK(find_count(out.journalled, "crm") == 10);
  CHECK(count(pg.url(), "SELECT count(*) FROM event_journal") == 20);
  CHECK(storage::load_offsets(pg.url(), cluster, {"crm"}).at(0).next_offset
        == 20);
}

TEST_CASE("the fence is the cluster's: another group continues from it",
          "[journal][fence]") {
  auto url = migrated_db();
  // Group A's instance journalled [0, 100) of crm/0.
  journal_writer a{url, cluster};
  a.write(good_batch("crm", 0, 0, 100));
  // Group B starts from `earliest` on the same cluster: nothing again.
  journal_writer b{url, cluster};
  auto again = b.write(good_batch("crm", 0, 0, 100));
  CHECK(find_count(again.skipped, "crm") == 100);
  CHECK(again.journalled.empty());
  auto next = b.write(good_batch("crm", 0, 100, 10));
  CHECK(find_count(next.journalled, "crm") == 10);
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 110);
  CHECK(stored_offset(url, "crm", 0) == 110);
  // The same coordinates on another cluster are other records.
  journal_writer other{url, "another-cluster"};
  auto theirs = other.write(good_batch("crm", 0, 0, 5));
  CHECK(find_count(theirs.journalled, "crm") == 5);
  CHECK_THROWS_AS(journal_writer(url, ""), std::invalid_argument);
}

TEST_CASE("adopting a group's legacy offsets keeps the greater position, "
          "once, with instances starting together",
          "[journal][fence]") {
  auto url = migrated_db();
  exec(url, "INSERT INTO legacy_group_offsets (group_id, topic, partition,"
            " next_offset) SELECT 'g', 'crm', p, 1000 + p"
            " FROM generate_series(0, 49) AS p");
  exec(url, "INSERT INTO legacy_group_offsets VALUES ('h', 'crm', 0, 5)");
  // A writer of this cluster already moved crm/1 further (an instance that
  // adopted and ran); crm/2 is behind the legacy position.
  journal_writer w{url, cluster};
  w.write(good_batch("crm", 1, 2000, 1));
  w.write(good_batch("crm", 2, 0, 1));
  std::vector<size_t> adopted(4);
  std::vector<std::exception_ptr> errs(4);
  std::vector<std::thread> starts;
  for (size_t i = 0; i < 4; ++i)
    starts.emplace_back([&, i] {
      try {
        adopted[i] = storage::adopt_group_offsets(url, cluster, "g");
      } catch (...) {
        errs[i] = std::current_exception();
      }
    });
  for (auto& t : starts)
    t.join();
  for (auto& e : errs)
    REQUIRE_FALSE(e);
  CHECK(adopted[0] + adopted[1] + adopted[2] + adopted[3] == 50);
  CHECK(stored_offset(url, "crm", 0) == 1000);
  CHECK(stored_offset(url, "crm", 1) == 2001);
  CHECK(stored_offset(url, "crm", 2) == 1002);
  CHECK(stored_offset(url, "crm", 49) == 1049);
  CHECK(count(url, "SELECT count(*) FROM journal_offsets") == 50);
  // Group h's row stays until h starts; then it cannot move crm/0 back.
  CHECK(count(url, "SELECT count(*) FROM legacy_group_offsets") == 1);
  CHECK(storage::adopt_group_offsets(url, cluster, "h") == 1);
  CHECK(stored_offset(url, "crm", 0) == 1000);
  // The adopted position fences: records below it are skipped.
  auto out = w.write(good_batch("crm", 3, 1000, 6));
  CHECK(find_count(out.skipped, "crm") == 3);
  CHECK(find_count(out.journalled, "crm") == 3);
}

namespace {

/// An accepted record of tenant t1 with these headers, through validation
/// (which reads x-replay-of and x-replay-id).
checked_record with_headers(int64_t offset, std::vector<kafka_header> hs) {
  auto r = record("crm", 0, offset, R"({"tenant_id":"t1"})");
  r.headers = std::move(hs);
  auto c = check_record(std::move(r), validation_limits{});
  REQUIRE(c.reason == reject_reason::none);
  return c;
}

void record_replay_row(const std::string& url, const std::string& replay_id,
                       int64_t event_id) {
  exec(url, "INSERT INTO replays (replay_id, event_id, tenant_id, topic,"
            " principal) VALUES ('" + replay_id + "', "
              + std::to_string(event_id) + ", 't1', 'crm', 'ops')");
}

} // namespace

TEST_CASE("provenance: x-replay-of is honoured only for a recorded replay",
          "[journal][provenance]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  record_replay_row(url, "r-7", 7);
  std::vector<checked_record> batch;
  // 0: a claim without a replay id.
  batch.push_back(with_headers(0, {{"x-replay-of", "7", true}}));
  // 1: a replay id nobody recorded.
  batch.push_back(with_headers(
    1, {{"x-replay-of", "7", true}, {"x-replay-id", "forged", true}}));
  // 2: a recorded replay id, but of another event.
  batch.push_back(with_headers(
    2, {{"x-replay-of", "8", true}, {"x-replay-id", "r-7", true}}));
  // 3: the recorded replay.
  batch.push_back(with_headers(
    3, {{"x-replay-of", "7", true}, {"x-replay-id", "r-7", true}}));
  // 4: the recorded replay id, but not the last x-replay-id header.
  batch.push_back(with_headers(4, {{"x-replay-of", "7", true},
                                   {"x-replay-id", "r-7", true},
                                   {"x-replay-id", "other", true}}));
  // 5: a replay id that is not one (bytes outside [A-Za-z0-9._-]).
  batch.push_back(with_headers(
    5, {{"x-replay-of", "7", true}, {"x-replay-id", "r-7'", true}}));
  CHECK(batch[3].replay_id == "r-7");
  CHECK(batch[5].replay_id.empty());
  w.write(batch);
  CHECK(strings(url, "SELECT coalesce(replay_of::text, 'null')"
                     " FROM event_journal ORDER BY \"offset\"")
        == std::vector<std::string>{"null", "null", "null", "7", "null",
                                    "null"});
  // The headers stay as they came, forged or not.
  CHECK(strings(url, "SELECT headers->0->>'value' || '/'"
                     " || coalesce(headers->1->>'value', '-')"
                     " FROM event_journal ORDER BY \"offset\"")
        == std::vector<std::string>{"7/-", "7/forged", "8/r-7", "7/r-7",
                                    "7/r-7", "7/r-7'"});
}

TEST_CASE("provenance: batches without claims do not read replays",
          "[journal][provenance]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  // Without the replays table, a batch that needs it fails; one that does
  // not need it goes through: it did not query replays.
  exec(url, "ALTER TABLE replays RENAME TO replays_away");
  auto plain = good_batch("crm", 0, 0, 5);
  // A claim without a replay id needs no lookup either.
  plain.push_back(with_headers(5, {{"x-replay-of", "7", true}}));
  auto out = w.write(plain);
  CHECK(find_count(out.journalled, "crm") == 6);
  CHECK_THROWS_AS(w.write({with_headers(6, {{"x-replay-of", "7", true},
                                            {"x-replay-id", "r-7", true}})}),
                  infra_error);
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 6);
  exec(url, "ALTER TABLE replays_away RENAME TO replays");
  record_replay_row(url, "r-7", 7);
  w.write({with_headers(6, {{"x-replay-of", "7", true},
                            {"x-replay-id", "r-7", true}})});
  CHECK(scalar(url, "SELECT replay_of FROM event_journal WHERE \"offset\" = 6")
        == "7");
}

TEST_CASE("payload_raw keeps the value byte for byte", "[journal][raw]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  // jsonb would reorder keys, drop the first "a", respell 1.0e2 and 1.50's
  // neighbours, and drop the whitespace.
  std::vector<std::string> payloads = {
    R"({"tenant_id":"t","b":1,"a":1.50,"a":2})",
    R"({"tenant_id":"t","n":1.0e2,"m":-0.0,"big":1E+400})",
    "{ \"tenant_id\" : \"t\" ,\n\t\"s\":\"tab\\there \\\\N \\u00e9 \xc3\xa9\"}\r\n",
    R"({"z":1,"tenant_id":"t","tenant_id":"t","y":[3,2,1]})",
  };
  std::vector<checked_record> batch;
  for (size_t i = 0; i < payloads.size(); ++i)
    batch.push_back(accepted("crm", 0, static_cast<int64_t>(i), payloads[i]));
  auto out = w.write(batch);
  REQUIRE(find_count(out.journalled, "crm") == payloads.size());

  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  for (size_t i = 0; i < payloads.size(); ++i) {
    INFO(payloads[i]);
    auto r = tx.exec_params("SELECT payload_raw, payload::text,"
                            " payload = payload_raw::jsonb FROM event_journal"
                            " WHERE \"offset\" = $1",
                            static_cast<int64_t>(i));
    REQUIRE(r.size() == 1);
    CHECK(r[0][0].as<std::string>() == payloads[i]);
    CHECK(r[0][1].as<std::string>() != payloads[i]); // what jsonb did
    CHECK(r[0][2].as<bool>());
  }
  // The reader gives the replayer the raw bytes.
  storage::journal_reader reader{url};
  auto id = std::stoll(scalar(url, "SELECT id FROM event_journal"
                                   " WHERE \"offset\" = 0"));
  auto ev = reader.event_by_id(id);
  REQUIRE(ev);
  CHECK(ev->has_raw);
  CHECK(ev->payload_raw == payloads[0]);
  CHECK(ev->payload_json == R"({"a": 2, "b": 1, "tenant_id": "t"})");
  // A row without payload_raw (journalled before migration 0005).
  exec(url, "UPDATE event_journal SET payload_raw = NULL WHERE id = "
              + std::to_string(id));
  ev = reader.event_by_id(id);
  REQUIRE(ev);
  CHECK_FALSE(ev->has_raw);
  CHECK(ev->payload_raw.empty());
  // latest_events does not carry it (the API shows jsonb).
  for (auto& e : reader.latest_events(10, every_tenant))
    CHECK_FALSE(e.has_raw);
}

TEST_CASE("journal-keep-raw=0 leaves payload_raw NULL", "[journal][raw]") {
  auto url = migrated_db();
  journal_writer off{url, cluster, false};
  off.write(good_batch("crm", 0, 0, 3));
  journal_writer on{url, cluster};
  on.write(good_batch("crm", 0, 3, 2));
  CHECK(strings(url, "SELECT coalesce(payload_raw, 'null') FROM event_journal"
                     " ORDER BY \"offset\"")
        == std::vector<std::string>{"null", "null", "null",
                                    R"({"tenant_id": "t1", "seq": 3})",
                                    R"({"tenant_id": "t1", "seq": 4})"});
}

namespace {

/// job_replay_id() (actors/kafka/replay_producer.hpp; this binary does not
/// link it): "j<job>-e<event>".
std::string job_replay_id_text(int64_t job, int64_t event) {
  return "j" + std::to_string(job) + "-e" + std::to_string(event);
}

void record_job_replay(const std::string& url, int64_t job, int64_t event) {
  exec(url, "INSERT INTO replays (replay_id, event_id, tenant_id, topic,"
            " principal, job_id) VALUES ('" + job_replay_id_text(job, event)
              + "', " + std::to_string(event) + ", 't1', 'crm', 'ops', "
              + std::to_string(job) + ")");
}

/// A record as the JOBS actor publishes event `event` in job `job`.
checked_record job_record(int64_t offset, int64_t job, int64_t event,
                          int32_t partition = 0) {
  auto c = with_headers(offset,
                        {{"x-replay-of", std::to_string(event), true},
                         {"x-replay-id", job_replay_id_text(job, event), true},
                         {"x-replay-job", std::to_string(job), true}});
  c.rec.partition = partition;
  return c;
}

} // namespace

TEST_CASE("replay_job is stored only for a recorded job replay",
          "[journal][provenance][job]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  record_job_replay(url, 5, 7);
  record_replay_row(url, "single", 7); // a single replay: no job
  std::vector<checked_record> batch;
  batch.push_back(job_record(0, 5, 7)); // recorded
  // 1: claims job 6, but the recorded replay is job 5's: job 5 is stored.
  auto claim = job_record(1, 6, 8);
  claim.replay_id = "j5-e7";
  batch.push_back(claim);
  // 2: a job header on a single replay: no job.
  batch.push_back(with_headers(2, {{"x-replay-of", "7", true},
                                   {"x-replay-id", "single", true},
                                   {"x-replay-job", "5", true}}));
  // 3: not recorded at all.
  batch.push_back(job_record(3, 9, 9));
  CHECK(batch[3].replay_job == 9);
  auto out = w.write(batch);
  CHECK(out.replay_duplicates.empty());
  CHECK(strings(url, "SELECT coalesce(replay_of::text, '-') || '/'"
                     " || coalesce(replay_job::text, '-')"
                     " FROM event_journal ORDER BY \"offset\"")
        // 1 is j5-e7 again (its x-replay-of 8 does not match: no claim),
        // so it is not a duplicate of 0 either.
        == std::vector<std::string>{"7/5", "-/-", "7/-", "-/-"});
}

TEST_CASE("a job's resend of an event is journalled once",
          "[journal][provenance][job]") {
  auto url = migrated_db();
  journal_writer w{url, cluster};
  for (int64_t e : {10, 11, 12})
    record_job_replay(url, 3, e);
  record_job_replay(url, 4, 10); // another job may replay the same event

  // Batch 1: events 10 and 11, and 10 again in the same batch (a resend
  // landing right behind the first send).
  auto out = w.write({job_record(0, 3, 10), job_record(1, 3, 11),
                      job_record(2, 3, 10)});
  CHECK(find_count(out.journalled, "crm") == 2);
  CHECK(find_count(out.replay_duplicates, "crm") == 1);
  CHECK(stored_offset(url, "crm", 0) == 3); // the duplicate's offset too

  // Batch 2 (after a restart of the job): 10 and 11 again, 12 new, job 4's
  // replay of 10, and an ordinary event.
  auto b2 = std::vector<checked_record>{
    job_record(3, 3, 10), job_record(4, 3, 12), job_record(5, 3, 11),
    job_record(6, 4, 10)};
  b2.push_back(accepted("crm", 0, 7, R"({"tenant_id":"t1"})"));
  // Another partition in the same batch: its resend is counted too.
  b2.push_back(job_record(0, 3, 12, 1));
  out = w.write(b2);
  CHECK(find_count(out.journalled, "crm") == 3); // 12, job 4's 10, plain
  CHECK(find_count(out.replay_duplicates, "crm") == 3);
  CHECK(stored_offset(url, "crm", 0) == 8);
  CHECK(stored_offset(url, "crm", 1) == 1);
  CHECK(strings(url, "SELECT replay_job || ':' || replay_of FROM event_journal"
                     " WHERE replay_job IS NOT NULL ORDER BY id")
        == std::vector<std::string>{"3:10", "3:11", "3:12", "4:10"});
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 5);
}
