// storage::journal_reader against a throwaway PostgreSQL: rows written by
// journal_writer read back (ordering, limits, absent ids, key/headers/payload
// round trip, DLQ raw payload variants), rendered by api/json.cpp and parsed
// back; unreachable server, reconnect, no waiting behind writers.
#include "api/json.hpp"
#include "storage/journal_reader.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <regex>

using namespace ces;
using namespace ces::test;
using storage::infra_error;
using storage::journal_reader;
using storage::journal_writer;

namespace {

const std::string group = "ces-reader-test";
const std::regex rfc3339_us{
  R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$)"};

checked_record full_record(const std::string& topic, int32_t partition,
                           int64_t offset, std::string value) {
  auto c = accepted(topic, partition, offset, std::move(value));
  c.rec.has_key = true;
  c.rec.key = "key-" + std::to_string(offset);
  c.rec.headers = {{"source", "crm", true}, {"trace", "", false}};
  c.rec.timestamp_ms = 1714564800123 + offset;
  c.rec.timestamp_type = 1;
  return c;
}

} // namespace

TEST_CASE("latest_events: newest first, limits, every column",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  journal_reader r{url};
  CHECK_FALSE(r.connected()); // lazy
  CHECK(r.latest_events(50, every_tenant).empty());
  CHECK(r.connected());

  std::vector<checked_record> batch;
  for (int64_t o = 0; o < 10; ++o)
    batch.push_back(full_record("apexflow.leads.created", 2, o,
                                R"({"tenant_id": "t1", "seq": )"
                                  + std::to_string(o) + "}"));
  batch[3].rec.has_key = false; // null key
  batch[4].rec.key.clear();     // empty key
  batch[5].rec.key = std::string("\xff\x00k", 3); // binary key
  batch[6].rec.headers = {{"bin", std::string("\x00\xff", 2), true},
                          {std::string("\xfe", 1), "v", true}};
  batch[7].rec.timestamp_ms = -1;
  batch[8].replay_of = 3; // a recorded replay of event 3
  batch[8].replay_id = "r-3";
  exec(url, "INSERT INTO replays (replay_id, event_id, tenant_id, topic,"
            " principal) VALUES ('r-3', 3, 't1', 'crm', 'ops')");
  w.write(batch);

  auto all = r.latest_events(50, every_tenant);
  REQUIRE(all.size() == 10);
  for (size_t i = 1; i < all.size(); ++i)
    CHECK(all[i - 1].id > all[i].id);
  // Newest first: offset 9 was written last.
  CHECK(all.front().offset == 9);
  CHECK(all.back().offset == 0);

  auto three = r.latest_events(3, every_tenant);
  REQUIRE(three.size() == 3);
  CHECK(three[0].id == all[0].id);
  CHECK(three[2].id == all[2].id);
  CHECK(r.latest_events(0, every_tenant).empty());
  CHECK(r.latest_events(-1, every_tenant).empty());

  auto by_offset = [&](int64_t o) {
    for (auto& e : all)
      if (e.offset == o)
        return e;
    FAIL("no event at offset " << o);
    return storage::journal_event{};
  };
  auto e0 = by_offset(0);
  CHECK(e0.tenant_id == "t1");
  CHECK(e0.topic == "apexflow.leads.created");
  CHECK(e0.partition == 2);
  CHECK(e0.has_key);
  CHECK(e0.key == "key-0");
  REQUIRE(e0.headers.size() == 2);
  CHECK(e0.headers[0].key == "source");
  CHECK(e0.headers[0].value == "crm");
  CHECK(e0.headers[0].has_value);
  CHECK(e0.headers[1].key == "trace");
  CHECK_FALSE(e0.headers[1].has_value);
  CHECK(nlohmann::json::parse(e0.payload_json)
        == nlohmann::json::parse(R"({"tenant_id":"t1","seq":0})"));
  CHECK(e0.kafka_timestamp_ms == 1714564800123);
  CHECK(std::regex_match(e0.received_at, rfc3339_us));
  CHECK(e0.replay_of == 0);

  CHECK_FALSE(by_offset(3).has_key);
  CHECK(by_offset(4).has_key);
  CHECK(by_offset(4).key.empty());
  CHECK(by_offset(5).key == std::string("\xff\x00k", 3));
  auto e6 = by_offset(6);
  REQUIRE(e6.headers.size() == 2);
  CHECK(e6.headers[0].value == std::string("\x00\xff", 2));
  CHECK(e6.headers[1].key == std::string("\xfe", 1));
  CHECK(by_offset(7).kafka_timestamp_ms == -1);
  CHECK(by_offset(8).replay_of == 3);

  // received_at is the server's clock, in UTC, whatever the session zone.
  auto now = scalar(url, "SELECT to_char(now() AT TIME ZONE 'UTC',"
                         " 'YYYY-MM-DD')");
  CHECK(e0.received_at.substr(0, 10) == now);
}

TEST_CASE("event_by_id: found and absent", "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  auto c = full_record("apexflow.jobs.created", 0, 5,
                       R"({"tenant_id":"t2","job":{"id":7}})");
  c.tenant_id = "t2";
  w.write({c});
  journal_reader r{url};
  auto id = std::stoll(scalar(url, "SELECT max(id) FROM event_journal"));
  auto e = r.event_by_id(id);
  REQUIRE(e);
  CHECK(e->id == id);
  CHECK(e->offset == 5);
  CHECK(e->tenant_id == "t2");
  CHECK_FALSE(r.event_by_id(id + 1));
  CHECK_FALSE(r.event_by_id(9223372036854775807LL));
  CHECK_FALSE(r.event_by_id(-1));
}

TEST_CASE("events render as the API's JSON", "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  auto c = full_record("apexflow.jobs.created", 1, 42,
                       "{\"tenant_id\": \"t\u00e9\", \"n\": 1.50,"
                       " \"deep\": [[{\"s\": \"\\u00e9\\ud83d\\ude00\"}]]}");
  c.rec.key = std::string("\x80", 1);
  w.write({c});
  journal_reader r{url};
  auto e = r.latest_events(1, every_tenant).at(0);
  auto j = nlohmann::json::parse(api::event_json(e));
  CHECK(j["id"] == e.id);
  CHECK(j["offset"] == 42);
  CHECK(j["key"]["base64"] == "gA==");
  CHECK(j["headers"][0]["value"] == "crm");
  CHECK(j["headers"][1]["value"].is_null());
  // jsonb normalises the text; the value is the same JSON.
  CHECK(j["payload"] == nlohmann::json::parse(c.rec.value));
  CHECK(j["kafka_timestamp"] == "2024-05-01T12:00:00.165Z");
  CHECK(std::regex_match(j["received_at"].get<std::string>(), rfc3339_us));
  CHECK(j["replay_of"].is_null());
  auto list = nlohmann::json::parse(
    api::events_json(r.latest_events(10, every_tenant)));
  CHECK(list.size() == 1);
}

TEST_CASE("latest_dlq: raw payload variants, newest first",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  std::vector<checked_record> batch;
  // 0: valid JSON without a tenant; 1: not JSON, UTF-8; 2: not UTF-8;
  // 3: null value; 4: empty value; 5: accepted by validation but refused by
  // PostgreSQL (db_rejected), with a tenant.
  batch.push_back(rejected("crm", 0, 0, R"({"x": 1})",
                           reject_reason::missing_tenant, "no tenant"));
  batch.push_back(rejected("crm", 0, 1, "hello, world",
                           reject_reason::invalid_json, "bad json"));
  batch.push_back(rejected("crm", 0, 2, std::string("\xfe\x00\xff", 3),
                           reject_reason::invalid_json, "bad bytes"));
  auto tomb = rejected("crm", 0, 3, "", reject_reason::empty_value, "null");
  tomb.rec.has_value = false;
  batch.push_back(tomb);
  batch.push_back(rejected("crm", 0, 4, "", reject_reason::empty_value,
                           "empty value"));
  batch.push_back(accepted("crm", 0, 5, R"({"tenant_id":"t","n":1e1000000})",
                           "t"));
  batch[1].rec.has_key = true;
  batch[1].rec.key = "k1";
  batch[1].rec.headers = {{"h", "v", true}};
  w.write(batch);

  journal_reader r{url};
  auto rows = r.latest_dlq(50, every_tenant);
  REQUIRE(rows.size() == 6);
  for (size_t i = 1; i < rows.size(); ++i)
    CHECK(rows[i - 1].id > rows[i].id);
  CHECK(r.latest_dlq(2, every_tenant).size() == 2);
  CHECK(r.latest_dlq(2, every_tenant)[0].id == rows[0].id);
  CHECK(r.pending_dlq_count() == 6);

  std::map<int64_t, storage::dlq_entry_row> by;
  for (auto& d : rows)
    by[d.offset] = d;
  CHECK(by[0].payload == R"({"x": 1})");
  CHECK(by[0].error_class == "missing_tenant");
  CHECK(by[0].error == "no tenant");
  CHECK(by[0].tenant_id.empty());
  CHECK(by[0].status == "pending");
  CHECK(by[0].attempts == 1);
  CHECK(by[0].has_partition);
  CHECK(by[0].has_offset);
  CHECK(by[0].topic == "crm");
  CHECK(std::regex_match(by[0].received_at, rfc3339_us));
  CHECK(std::regex_match(by[0].updated_at, rfc3339_us));
  CHECK(by[1].has_key);
  CHECK(by[1].key == "k1");
  REQUIRE(by[1].headers.size() == 1);
  CHECK(by[1].headers[0].value == "v");
  CHECK(by[2].payload == std::string("\xfe\x00\xff", 3));
  CHECK(by[2].payload_size == 3);
  CHECK_FALSE(by[3].has_payload);
  CHECK(by[4].has_payload);
  CHECK(by[4].payload.empty());
  CHECK(by[5].error_class == "db_rejected");
  CHECK(by[5].tenant_id == "t");

  auto j = nlohmann::json::parse(api::dlq_json(rows));
  REQUIRE(j.size() == 6);
  std::map<int64_t, nlohmann::json> jby;
  for (auto& x : j)
    jby[x["offset"].get<int64_t>()] = x;
  CHECK(jby[0]["payload_format"] == "json");
  CHECK(jby[0]["payload"] == nlohmann::json::parse(R"({"x":1})"));
  CHECK(jby[1]["payload_format"] == "text");
  CHECK(jby[1]["payload"] == "hello, world");
  CHECK(jby[1]["key"] == "k1");
  CHECK(jby[2]["payload_format"] == "base64");
  CHECK(jby[2]["payload"]["base64"] == "/gD/");
  CHECK(jby[3]["payload_format"] == "null");
  CHECK(jby[3]["payload"].is_null());
  CHECK(jby[4]["payload_format"] == "text");
  CHECK(jby[4]["payload"] == "");
  // 1e1000000 is JSON, but jsonb refused it (numeric out of range): text.
  CHECK(jby[5]["error_class"] == "db_rejected");
  CHECK(jby[5]["payload_format"] == "text");
  CHECK(jby[5]["payload"] == R"({"tenant_id":"t","n":1e1000000})");
  CHECK(jby[5]["tenant_id"] == "t");
}

TEST_CASE("large DLQ payloads are cut", "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  std::string big = "[" + std::string(100000, '1') + "]";
  w.write({rejected("crm", 0, 0, big, reject_reason::too_large, "too large")});
  storage::journal_reader_options o;
  o.max_dlq_payload_bytes = 1000;
  journal_reader small{url, o};
  auto d = small.latest_dlq(1, every_tenant).at(0);
  CHECK(d.payload.size() == 1000);
  CHECK(d.payload_size == big.size());
  CHECK(d.payload_truncated);
  auto j = nlohmann::json::parse(api::dlq_entry_json(d));
  CHECK(j["payload_format"] == "text");
  CHECK(j["payload_truncated"] == true);
  CHECK(j["payload_bytes"] == big.size());
  o.max_dlq_payload_bytes = 0; // no limit
  journal_reader whole{url, o};
  auto full = whole.latest_dlq(1, every_tenant).at(0);
  CHECK(full.payload == big);
  CHECK_FALSE(full.payload_truncated);
}

TEST_CASE("latest_page: large events are cut by bytes, never below one",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  // Six events of about 300 KB each (key and headers add a little).
  const size_t big = 300 * 1000;
  std::vector<checked_record> batch;
  for (int64_t o = 0; o < 6; ++o)
    batch.push_back(full_record("apexflow.leads.created", 0, o,
                                R"({"tenant_id": "t1", "blob": ")"
                                  + std::string(big, 'a' + o) + "\"}"));
  w.write(batch);
  storage::journal_reader_options o;
  o.max_page_bytes = 1000 * 1000; // three events fit, not four
  journal_reader r{url, o};
  auto page = r.latest_page(1000, every_tenant);
  CHECK(page.truncated);
  REQUIRE(page.events.size() == 3);
  CHECK(page.events[0].offset == 5); // the newest ones
  CHECK(page.events[2].offset == 3);
  size_t bytes = 0;
  for (auto& e : page.events)
    bytes += e.payload_json.size();
  CHECK(bytes <= o.max_page_bytes);
  // Under the bound: the whole page, not cut.
  auto two = r.latest_page(2, every_tenant);
  CHECK_FALSE(two.truncated);
  CHECK(two.events.size() == 2);
  // One event larger than the bound still comes, alone.
  o.max_page_bytes = 1000;
  journal_reader tiny{url, o};
  auto one = tiny.latest_page(50, every_tenant);
  CHECK(one.truncated);
  REQUIRE(one.events.size() == 1);
  CHECK(one.events[0].offset == 5);
  CHECK(one.events[0].payload_json.size() > big);
  // No bound: everything.
  o.max_page_bytes = 0;
  journal_reader all{url, o};
  auto six = all.latest_page(1000, every_tenant);
  CHECK_FALSE(six.truncated);
  CHECK(six.events.size() == 6);
  // Exactly as many rows as asked for, all fitting: not cut.
  CHECK_FALSE(all.latest_page(6, every_tenant).truncated);
}

TEST_CASE("unreachable server, reconnect, ping", "[journal_reader]") {
  journal_reader nowhere{"postgresql://postgres@127.0.0.1:1/nowhere"};
  CHECK_THROWS_AS(nowhere.ping(), infra_error);
  CHECK_THROWS_AS(nowhere.latest_events(1, every_tenant), infra_error);
  CHECK_THROWS_AS(nowhere.event_by_id(1), infra_error);
  CHECK_THROWS_AS(nowhere.latest_dlq(1, every_tenant), infra_error);
  CHECK_THROWS_AS(nowhere.pending_dlq_count(), infra_error);
  CHECK_THROWS_WITH(nowhere.ping(),
                    Catch::Contains("cannot connect to PostgreSQL"));

  auto url = migrated_db();
  journal_reader r{url};
  REQUIRE_NOTHROW(r.ping());
  CHECK(r.connected());
  terminate_others(url);
  CHECK_THROWS_AS(r.ping(), infra_error);
  CHECK_FALSE(r.connected());
  CHECK_NOTHROW(r.ping());
  CHECK(r.latest_events(5, every_tenant).empty());
}

TEST_CASE("reads do not wait behind an open write transaction",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  w.write({accepted("crm", 0, 0, R"({"tenant_id":"t"})")});
  journal_reader r{url};
  r.ping();
  // A writer in the middle of a batch: rows inserted (and DLQ rows), not
  // committed, locks held.
  pqxx::connection writer{url};
  pqxx::work tx{writer};
  tx.exec("INSERT INTO event_journal (tenant_id, topic, partition, \"offset\","
          " payload) VALUES ('t', 'crm', 0, 1, '{}')");
  tx.exec("INSERT INTO event_dlq (topic, error_class, error)"
          " VALUES ('crm', 'invalid_json', 'x')");
  tx.exec("LOCK TABLE event_journal IN ROW EXCLUSIVE MODE");
  auto t0 = std::chrono::steady_clock::now();
  // The uncommitted row is invisible.
  CHECK(r.latest_events(10, every_tenant).size() == 1);
  CHECK(r.latest_dlq(10, every_tenant).empty());
  CHECK(r.pending_dlq_count() == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(2));
  tx.commit();
  CHECK(r.latest_events(10, every_tenant).size() == 2);
}

TEST_CASE("a read blocked by a lock fails after statement_timeout",
          "[journal_reader]") {
  auto url = migrated_db();
  storage::journal_reader_options o;
  o.statement_timeout_ms = 300;
  journal_reader r{url, o};
  r.ping();
  pqxx::connection locker{url};
  pqxx::work tx{locker};
  tx.exec("LOCK TABLE event_journal IN ACCESS EXCLUSIVE MODE");
  auto t0 = std::chrono::steady_clock::now();
  CHECK_THROWS_WITH(r.latest_events(1, every_tenant),
                    Catch::Contains("57014"));
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(3));
  tx.abort();
  CHECK(r.latest_events(1, every_tenant).empty()); // reconnected
}

namespace {

tenant_scope only(std::vector<std::string> tenants,
                  bool unknown_tenant = false) {
  tenant_scope s;
  s.tenants = std::move(tenants);
  s.unknown_tenant = unknown_tenant;
  return s;
}

std::vector<std::string>
tenants_of(const std::vector<storage::journal_event>& xs) {
  std::vector<std::string> out;
  for (auto& e : xs)
    out.push_back(e.tenant_id);
  return out;
}

} // namespace

TEST_CASE("latest_events and latest_page see only the scope's tenants",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  std::vector<checked_record> batch;
  // Offsets 0..8, tenants a, b, c in turn; one tenant id with SQL and array
  // syntax in it.
  const std::vector<std::string> tenants{"a", "b", "c'\",{}"};
  for (int64_t o = 0; o < 9; ++o)
    batch.push_back(accepted("crm", 0, o, R"({"n":1})", tenants[o % 3]));
  w.write(batch);
  journal_reader r{url};

  auto a = r.latest_events(50, only({"a"}));
  CHECK(tenants_of(a) == std::vector<std::string>{"a", "a", "a"});
  CHECK(a.front().offset == 6); // newest first
  auto ac = r.latest_events(50, only({"a", "c'\",{}"}));
  CHECK(ac.size() == 6);
  for (auto& e : ac)
    CHECK(e.tenant_id != "b");
  // The limit counts visible rows only.
  auto two = r.latest_events(2, only({"b"}));
  REQUIRE(two.size() == 2);
  CHECK(two[0].offset == 7);
  CHECK(two[1].offset == 4);
  CHECK(r.latest_events(50, only({})).empty());
  CHECK(r.latest_events(50, only({}, true)).empty());
  CHECK(r.latest_events(50, only({"nobody"})).empty());
  CHECK(r.latest_events(50, every_tenant).size() == 9);

  auto page = r.latest_page(50, only({"c'\",{}"}));
  CHECK(tenants_of(page.events)
        == std::vector<std::string>(3, "c'\",{}"));
  CHECK_FALSE(page.truncated);
  auto cut = r.latest_page(2, only({"a"}));
  CHECK(cut.events.size() == 2);
  CHECK(tenants_of(cut.events) == std::vector<std::string>{"a", "a"});
  CHECK(r.latest_page(50, only({})).events.empty());
  CHECK(r.latest_page(50, every_tenant).events.size() == 9);
}

TEST_CASE("latest_page's byte bound counts the scope's rows only",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  std::string big(2000, 'x');
  std::vector<checked_record> batch;
  // Newest rows: big rows of tenant "other" after small rows of "mine".
  for (int64_t o = 0; o < 3; ++o)
    batch.push_back(accepted("crm", 0, o, R"({"n":1})", "mine"));
  for (int64_t o = 3; o < 8; ++o)
    batch.push_back(
      accepted("crm", 0, o, R"({"s":")" + big + R"("})", "other"));
  w.write(batch);
  storage::journal_reader_options o;
  o.max_page_bytes = 1000;
  journal_reader r{url, o};
  auto mine = r.latest_page(50, only({"mine"}));
  CHECK(mine.events.size() == 3);
  CHECK_FALSE(mine.truncated);
  auto other = r.latest_page(50, only({"other"}));
  CHECK(other.events.size() == 1); // always the newest one
  CHECK(other.truncated);
}

TEST_CASE("latest_dlq: rows without a tenant only for unknown_tenant",
          "[journal_reader]") {
  auto url = migrated_db();
  journal_writer w{url, group};
  std::vector<checked_record> batch;
  batch.push_back(rejected("crm", 0, 0, R"({"x": 1})",
                           reject_reason::missing_tenant, "no tenant"));
  auto with_a = rejected("crm", 0, 1, "{", reject_reason::invalid_json, "bad");
  with_a.tenant_id = "a";
  batch.push_back(with_a);
  auto with_b = rejected("crm", 0, 2, "{", reject_reason::invalid_json, "bad");
  with_b.tenant_id = "b";
  batch.push_back(with_b);
  w.write(batch);
  journal_reader r{url};

  auto tenants = [](const std::vector<storage::dlq_entry_row>& xs) {
    std::vector<std::string> out;
    for (auto& d : xs)
      out.push_back(d.tenant_id);
    return out;
  };
  CHECK(tenants(r.latest_dlq(50, every_tenant))
        == std::vector<std::string>{"b", "a", ""});
  CHECK(tenants(r.latest_dlq(50, only({"a"})))
        == std::vector<std::string>{"a"});
  CHECK(tenants(r.latest_dlq(50, only({"a", "b"})))
        == std::vector<std::string>{"b", "a"});
  CHECK(tenants(r.latest_dlq(50, only({"a"}, true)))
        == std::vector<std::string>{"a", ""});
  CHECK(tenants(r.latest_dlq(50, only({}, true)))
        == std::vector<std::string>{""});
  CHECK(r.latest_dlq(50, only({})).empty());
  // "*" without unknown_tenant: every tenant's rows, not the unknown ones.
  tenant_scope star;
  star.all = true;
  CHECK(tenants(r.latest_dlq(50, star))
        == std::vector<std::string>{"b", "a"});
}

TEST_CASE("record_replay writes the replay and its audit row in one "
          "transaction", "[journal_reader]") {
  auto url = migrated_db();
  journal_reader r{url};
  storage::replay_record rec;
  rec.replay_id = "11111111-2222-4333-8444-555555555555";
  rec.event_id = 42;
  rec.tenant_id = "t1";
  rec.topic = "crm";
  rec.principal = "ops";
  rec.request_id = "req-1";
  audit_entry a;
  a.who.principal = "ops";
  a.who.role = "operator";
  a.who.scope = only({"t1", "t2"});
  a.who.request_id = "req-1";
  a.who.client_addr = "127.0.0.1";
  a.action = "replay";
  a.target = "event/42";
  a.parameters = R"({"replay_id":"11111111-2222-4333-8444-555555555555"})";
  a.outcome = "accepted";
  r.record_replay(rec, a);
  CHECK(scalar(url, "SELECT event_id || '/' || tenant_id || '/' || topic"
                    " || '/' || principal || '/' || request_id"
                    " || '/' || (job_id IS NULL) FROM replays")
        == "42/t1/crm/ops/req-1/true");
  CHECK(scalar(url, "SELECT principal || '/' || role || '/' || action || '/'"
                    " || target || '/' || outcome || '/' || (status IS NULL)"
                    " || '/' || (parameters->>'replay_id') || '/'"
                    " || array_to_string(tenants, ',') || '/' || request_id"
                    " FROM audit_log")
        == "ops/operator/replay/event/42/accepted/true/"
           "11111111-2222-4333-8444-555555555555/t1,t2/req-1");
  // The replays row and the audit row were written by one transaction.
  CHECK(scalar(url, "SELECT count(DISTINCT xmin::text) FROM ("
                    " SELECT xmin FROM replays UNION ALL"
                    " SELECT xmin FROM audit_log) x")
        == "1");

  // A failing audit row takes the replays row with it: a second replay whose
  // audit row a constraint (added here) refuses.
  exec(url, "ALTER TABLE audit_log ADD CONSTRAINT no_x CHECK (target <> 'x')");
  auto rec2 = rec;
  rec2.replay_id = "other";
  auto bad = a;
  bad.target = "x";
  CHECK_THROWS_AS(r.record_replay(rec2, bad), infra_error);
  CHECK(count(url, "SELECT count(*) FROM replays") == 1);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 1);
  // The reader reconnects and its session stays read-only for reads.
  r.append_audit(a);
  CHECK(count(url, "SELECT count(*) FROM audit_log") == 2);
  CHECK(r.latest_events(1, every_tenant).empty());
  // A replay id is recorded once.
  CHECK_THROWS_AS(r.record_replay(rec, a), infra_error);
  CHECK(count(url, "SELECT count(*) FROM replays") == 1);
}
