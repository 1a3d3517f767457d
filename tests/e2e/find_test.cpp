// End-to-end: GET /events with filters and the RFC 8288 Link walk, GET /dlq
// (unchanged without filters; with filters and a cursor), GET /dlq/{id},
// bad filters (400 with stable codes) and a scoped key naming another
// tenant (403 with an audit row), on the real binary.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string jobs = "apexflow.jobs.created";
const std::string leads = "apexflow.leads.created";

ces::test::http_response get(world& w, const std::string& target,
                             const std::string& credentials = {}) {
  std::vector<std::pair<std::string, std::string>> headers;
  if (!credentials.empty())
    headers.emplace_back("Authorization", credentials);
  return ces::test::http_request("GET", "127.0.0.1", w.http_port(), target,
                                 {}, {}, 20s, headers);
}

/// The target of a `Link: <target>; rel="next"` header ("" when none).
std::string next_of(const ces::test::http_response& r) {
  auto link = r.header("link");
  if (link.empty())
    return "";
  CHECK(link.find("; rel=\"next\"") != std::string::npos);
  auto open = link.find('<');
  auto close = link.find('>');
  REQUIRE(open == 0);
  REQUIRE(close != std::string::npos);
  return link.substr(open + 1, close - open - 1);
}

/// Follows the Link headers from `target`; the ids of every page, in order.
std::vector<int64_t> walk(world& w, std::string target,
                          const std::string& credentials = {},
                          size_t* pages = nullptr) {
  std::vector<int64_t> ids;
  for (int guard = 0; guard < 1000 && !target.empty(); ++guard) {
    INFO(target);
    auto r = get(w, target, credentials);
    REQUIRE(r.status == 200);
    auto page = json::parse(r.body);
    REQUIRE(page.is_array());
    for (auto& x : page)
      ids.push_back(x["id"].get<int64_t>());
    if (pages != nullptr)
      ++*pages;
    target = next_of(r);
    if (!target.empty()) {
      // The same path and filters, an opaque cursor (not a bare id).
      CHECK(target.find("cursor=") != std::string::npos);
      CHECK(target.find("cursor=" + std::to_string(ids.back()))
            == std::string::npos);
    }
  }
  return ids;
}

std::vector<int64_t> sql_ids(const world& w, const std::string& sql) {
  std::vector<int64_t> out;
  for (auto& row : w.rows(sql))
    out.push_back(std::stoll(row.at(0)));
  return out;
}

std::string bearer_key(world& w, const std::string& name,
                       const std::string& role, const json& tenants) {
  json body{{"name", name}, {"role", role}, {"tenants", tenants}};
  auto r = ces::test::http_request("POST", "127.0.0.1", w.http_port(),
                                   "/keys", body.dump(), "application/json",
                                   20s);
  INFO(r.body);
  REQUIRE(r.status == 201);
  return "Bearer " + json::parse(r.body)["key"].get<std::string>();
}

} // namespace

TEST_CASE("GET /events and GET /dlq: filters, Link walks, errors, scope",
          "[e2e]") {
  world w{{leads, jobs}, 2};
  auto sink = w.start_sink();
  w.produce({"--topics", jobs, "--count", "40", "--tenants", "2"});
  w.produce({"--topics", leads, "--count", "20", "--tenants", "2",
             "--poison-every", "2", "--start-index", "100"});
  REQUIRE(eventually(
    [&] {
      return w.count("select count(*) from event_journal")
               + w.count("select count(*) from event_dlq")
             == 60;
    },
    30s));
  auto n_dlq = w.count("select count(*) from event_dlq");
  REQUIRE(n_dlq >= 4);
  REQUIRE(w.count("select count(*) from event_dlq where tenant_id is null")
          > 0);

  { // a filter and the Link walk give every row once, in order
    auto expected = sql_ids(w, "select id from event_journal where tenant_id"
                               " = 'tenant-01' and topic = '"
                                 + jobs + "' order by id desc");
    REQUIRE(expected.size() > 7);
    size_t pages = 0;
    CHECK(walk(w, "/events?tenant_id=tenant-01&topic=" + jobs + "&limit=3",
               {}, &pages)
          == expected);
    CHECK(pages >= expected.size() / 3);
    // Every event, newest first, a page at a time.
    CHECK(walk(w, "/events?limit=7")
          == sql_ids(w, "select id from event_journal order by id desc"));
    // A time window that holds everything, written with an offset.
    auto all = walk(w, "/events?from=2000-01-01T00:00:00%2B02:00"
                       "&to=2999-01-01T00:00:00Z&replays=exclude");
    CHECK(all.size() == static_cast<size_t>(
                          w.count("select count(*) from event_journal")));
    // A key: the producer's keys are per event.
    auto key = w.value("select convert_from(key, 'UTF8') from event_journal"
                       " where key is not null order by id limit 1");
    REQUIRE_FALSE(key.empty());
    CHECK(walk(w, "/events?key=" + key)
          == sql_ids(w, "select id from event_journal where key ="
                        " convert_to('"
                          + key + "', 'UTF8') order by id desc"));
    // A page that is not full has no Link.
    auto last = get(w, "/events?tenant_id=tenant-02&limit=1000");
    REQUIRE(last.status == 200);
    CHECK(last.header("link").empty());
    // No replays yet.
    CHECK(get(w, "/events?replays=only").body == "[]");
  }

  { // bad filters are 400 with their stable codes
    auto code = [&](const std::string& target) {
      auto r = get(w, target);
      INFO(target << " -> " << r.status << " " << r.body);
      CHECK(r.status == 400);
      return json::parse(r.body)["error"].get<std::string>();
    };
    CHECK(code("/events?from=yesterday") == "bad_time");
    CHECK(code("/events?from=2024-05-02T00:00:00Z&to=2024-05-01T00:00:00Z")
          == "bad_time");
    CHECK(code("/events?replays=all") == "bad_filter");
    CHECK(code("/events?topic=a%20b") == "bad_filter");
    CHECK(code("/events?replay_of=0") == "bad_filter");
    CHECK(code("/events?cursor=42") == "bad_cursor");
    CHECK(code("/events?colour=red") == "bad_query");
    CHECK(code("/events?limit=0") == "bad_limit");
    CHECK(code("/dlq?status=done") == "bad_filter");
    CHECK(code("/dlq?to=soon") == "bad_time");
    CHECK(code("/dlq?cursor=garbage") == "bad_cursor");
    // And the service keeps serving.
    CHECK(get(w, "/events?limit=1").status == 200);
  }

  { // a scoped key: its tenants only; another tenant is 403
    auto viewer = bearer_key(w, "viewer-t1", "viewer", {"tenant-01"});
    CHECK(walk(w, "/events?limit=5", viewer)
          == sql_ids(w, "select id from event_journal where tenant_id ="
                        " 'tenant-01' order by id desc"));
    auto refused = get(w, "/events?tenant_id=tenant-02", viewer);
    CHECK(refused.status == 403);
    CHECK(json::parse(refused.body)["error"] == "forbidden");
    auto refused_dlq = get(w, "/dlq?tenant_id=tenant-02", viewer);
    CHECK(refused_dlq.status == 403);
    CHECK(get(w, "/events?tenant_id=tenant-01&limit=1", viewer).status
          == 200);
    // Audited like a role refusal.
    CHECK(eventually(
      [&] {
        return w.count("select count(*) from audit_log where principal ="
                       " 'viewer-t1' and action = 'auth' and outcome ="
                       " 'refused' and status = 403 and target in"
                       " ('events_find', 'dlq_latest')")
               == 2;
      },
      10s));
    // DLQ rows: its tenant's only (none without a tenant).
    CHECK(walk(w, "/dlq?limit=2", viewer)
          == sql_ids(w, "select id from event_dlq where tenant_id ="
                        " 'tenant-01' order by id desc"));
    auto no_tenant = w.value("select min(id) from event_dlq where tenant_id"
                             " is null");
    CHECK(get(w, "/dlq/" + no_tenant, viewer).status == 404);
    CHECK(get(w, "/dlq/" + no_tenant).status == 200); // the admin sees it
  }

  { // GET /dlq?limit=N is the original array; filters and cursor
    auto r = get(w, "/dlq?limit=3");
    REQUIRE(r.status == 200);
    auto page = json::parse(r.body);
    REQUIRE(page.is_array());
    std::vector<int64_t> ids;
    for (auto& x : page) {
      ids.push_back(x["id"].get<int64_t>());
      CHECK(x["payload_format"].is_string());
      CHECK(x["status"] == "pending");
    }
    CHECK(ids == sql_ids(w, "select id from event_dlq order by id desc"
                            " limit 3"));
    CHECK(json::parse(get(w, "/dlq").body).size()
          == static_cast<size_t>(n_dlq));
    CHECK(walk(w, "/dlq?limit=2")
          == sql_ids(w, "select id from event_dlq order by id desc"));
    auto cls = w.value("select error_class from event_dlq order by id"
                       " limit 1");
    CHECK(walk(w, "/dlq?status=pending&error_class=" + cls + "&topic="
                    + leads + "&limit=1")
          == sql_ids(w, "select id from event_dlq where error_class = '"
                          + cls + "' order by id desc"));
    CHECK(get(w, "/dlq?status=resolved").body == "[]");
  }

  { // GET /dlq/{id}: one entry, 404 when absent
    auto id = w.value("select max(id) from event_dlq");
    auto r = get(w, "/dlq/" + id);
    REQUIRE(r.status == 200);
    auto d = json::parse(r.body);
    REQUIRE(d.is_object());
    CHECK(d["id"] == std::stoll(id));
    CHECK(d["topic"] == leads);
    CHECK(d["error_class"]
          == w.value("select error_class from event_dlq where id = " + id));
    auto missing = get(w, "/dlq/999999");
    CHECK(missing.status == 404);
    CHECK(json::parse(missing.body)["error"] == "not_found");
    CHECK(get(w, "/dlq/abc").status == 400);
  }
  CHECK(sink.stop().success());
}
