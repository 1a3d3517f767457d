// GET /events and GET /dlq storage reads (journal_reader::find_page,
// find_dlq, dlq_by_id) against a throwaway PostgreSQL: a few thousand rows
// seeded by SQL (several tenants, topics, keys, times, replays), then for a
// set of filters and scopes every page walked with the keyset cursor and
// compared with the same query written by hand: every row exactly once, in
// order.
#include "storage/journal_reader.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <set>

using namespace ces;
using namespace ces::test;
using storage::journal_reader;

namespace {

constexpr int n_events = 3000;
constexpr int n_dlq = 2000;

/// Tenants of the seeded rows: one with SQL and array syntax in it.
const char* const tenant_case =
  "CASE g % 4 WHEN 0 THEN 'a' WHEN 1 THEN 'b' WHEN 2 THEN 'c''\"{,}'"
  " ELSE 'd' END";

/// n_events journal rows with ids 1..n_events. received_at is not in id
/// order (as after a consumer catches up on several partitions) and spans
/// three daily partitions of the journal, so pages cross partitions; every
/// tenth row replays one of the rows 1, 11, 21; every seventh has no key.
void seed_events(const std::string& url) {
  exec(url, "SELECT ces_journal_ensure_partitions("
            "'2024-05-01 00:00:00Z', '2024-05-03 23:59:59Z', 'day')");
  exec(url,
       std::string("INSERT INTO event_journal (tenant_id, topic, partition,"
                   " \"offset\", key, payload, received_at, replay_of)"
                   " SELECT ")
         + tenant_case
         + ", 'topic.' || (g % 3), g % 2, g,"
           " CASE WHEN g % 7 = 0 THEN NULL"
           "  ELSE convert_to('k' || (g % 11), 'UTF8') END,"
           " jsonb_build_object('n', g, 'pad', repeat('x', g % 97)),"
           " timestamptz '2024-05-01 00:00:00Z'"
           "  + ((g * 37) % "
         + std::to_string(n_events)
         + ") * interval '1 minute',"
           " CASE WHEN g % 10 = 0 THEN (g % 30) + 1 END"
           " FROM generate_series(1, "
         + std::to_string(n_events) + ") AS g");
}

/// n_dlq DLQ rows: every fifth without a tenant.
void seed_dlq(const std::string& url) {
  exec(url,
       std::string("INSERT INTO event_dlq (topic, partition, \"offset\","
                   " payload, tenant_id, error_class, error, status,"
                   " received_at)"
                   " SELECT 'topic.' || (g % 3), 0, g,"
                   " convert_to('{bad ' || g, 'UTF8'),"
                   " CASE WHEN g % 5 = 0 THEN NULL ELSE ")
         + tenant_case
         + " END,"
           " (ARRAY['invalid_json','missing_tenant','too_large'])"
           "  [1 + (g / 3) % 3],"
           " 'error ' || g,"
           " (ARRAY['pending','retried','resolved','discarded'])"
           "  [1 + (g / 7) % 4],"
           " timestamptz '2024-05-01 00:00:00Z'"
           "  + ((g * 13) % "
         + std::to_string(n_dlq)
         + ") * interval '1 minute'"
           " FROM generate_series(1, "
         + std::to_string(n_dlq) + ") AS g");
}

/// The ids `sql` selects (one bigint column), in its order.
std::vector<int64_t> ids_of(const std::string& url, const std::string& sql) {
  pqxx::connection c{url};
  pqxx::nontransaction tx{c};
  std::vector<int64_t> out;
  for (const auto& row : tx.exec(sql))
    out.push_back(row[0].as<int64_t>());
  return out;
}

tenant_scope only(std::vector<std::string> tenants, bool unknown = false) {
  tenant_scope s;
  s.tenants = std::move(tenants);
  s.unknown_tenant = unknown;
  return s;
}

/// Every page of find_page(f, scope, limit, cursor): the ids in the order
/// served. Checks each page (newest first, at most `limit`, id below the
/// cursor, never empty while there are more).
std::vector<int64_t> walk_events(journal_reader& r, const event_filter& f,
                                 const tenant_scope& scope, int limit,
                                 size_t* pages = nullptr) {
  std::vector<int64_t> out;
  int64_t before = 0;
  for (int guard = 0; guard < 2 * n_events + 2; ++guard) {
    auto page = r.find_page(f, scope, limit, before);
    if (pages != nullptr)
      ++*pages;
    REQUIRE(static_cast<int>(page.events.size()) <= limit);
    for (auto& e : page.events) {
      if (before > 0)
        REQUIRE(e.id < before);
      if (!out.empty())
        REQUIRE(e.id < out.back());
      out.push_back(e.id);
    }
    bool more = page.truncated
                || static_cast<int>(page.events.size()) == limit;
    if (!more || page.events.empty())
      return out;
    before = page.events.back().id;
  }
  FAIL("the walk did not end");
  return out;
}

std::vector<int64_t> walk_dlq(journal_reader& r, const dlq_filter& f,
                              const tenant_scope& scope, int limit) {
  std::vector<int64_t> out;
  int64_t before = 0;
  for (int guard = 0; guard < 2 * n_dlq + 2; ++guard) {
    auto rows = r.find_dlq(f, scope, limit, before);
    REQUIRE(static_cast<int>(rows.size()) <= limit);
    for (auto& d : rows) {
      if (!out.empty())
        REQUIRE(d.id < out.back());
      out.push_back(d.id);
    }
    if (static_cast<int>(rows.size()) < limit)
      return out;
    before = rows.back().id;
  }
  FAIL("the walk did not end");
  return out;
}

struct event_case {
  const char* name;
  event_filter filter;
  tenant_scope scope;
  std::string where; // the same selection, written by hand
};

std::vector<event_case> event_cases() {
  std::vector<event_case> xs;
  auto add = [&](const char* name, tenant_scope scope, std::string where,
                 auto set) {
    event_case c{name, {}, std::move(scope), std::move(where)};
    set(c.filter);
    xs.push_back(std::move(c));
  };
  add("everything", every_tenant, "true", [](event_filter&) {});
  add("tenant b", every_tenant, "tenant_id = 'b'",
      [](event_filter& f) { f.tenant_id = "b"; });
  add("odd tenant name", only({"c'\"{,}"}), "tenant_id = 'c''\"{,}'",
      [](event_filter& f) { f.tenant_id = "c'\"{,}"; });
  add("topic without replays", every_tenant,
      "topic = 'topic.1' AND replay_of IS NULL", [](event_filter& f) {
        f.topic = "topic.1";
        f.replays = replays_mode::exclude;
      });
  add("key", every_tenant, "key = 'k3'::bytea",
      [](event_filter& f) {
        f.has_key = true;
        f.key = "k3";
      });
  add("time window with an offset", every_tenant,
      "received_at >= '2024-05-01 10:00:00Z'"
      " AND received_at < '2024-05-01 20:00:00Z'",
      [](event_filter& f) {
        f.from = "2024-05-01T12:00:00+02:00";
        f.to = "2024-05-01T20:00:00Z";
      });
  add("replays only", every_tenant, "replay_of IS NOT NULL",
      [](event_filter& f) { f.replays = replays_mode::only; });
  add("replays of one event", every_tenant, "replay_of = 11",
      [](event_filter& f) { f.replay_of = 11; });
  add("scope a, d and a topic", only({"a", "d"}),
      "tenant_id IN ('a', 'd') AND topic = 'topic.2'",
      [](event_filter& f) { f.topic = "topic.2"; });
  add("everything a scope sees", only({"b", "d"}), "tenant_id IN ('b', 'd')",
      [](event_filter&) {});
  add("all filters at once", every_tenant,
      "tenant_id = 'a' AND topic = 'topic.0' AND key = 'k5'::bytea"
      " AND received_at >= '2024-05-01 00:00:00Z'"
      " AND received_at < '2024-05-02 12:00:00Z' AND replay_of IS NULL",
      [](event_filter& f) {
        f.tenant_id = "a";
        f.topic = "topic.0";
        f.has_key = true;
        f.key = "k5";
        f.from = "2024-05-01T00:00:00Z";
        f.to = "2024-05-02T12:00:00Z";
        f.replays = replays_mode::exclude;
      });
  add("ids", only({"a"}), "id IN (4, 8, 9, 12, 2000) AND tenant_id = 'a'",
      [](event_filter& f) { f.ids = {4, 8, 9, 12, 2000}; });
  add("nothing matches", every_tenant, "false",
      [](event_filter& f) { f.topic = "no.such.topic"; });
  add("a tenant outside the scope", only({"a"}), "false",
      [](event_filter& f) { f.tenant_id = "b"; });
  add("a scope of no tenant", only({}, true), "false", [](event_filter&) {});
  return xs;
}

} // namespace

TEST_CASE("find_page: every row once, in order, across pages",
          "[find]") {
  auto url = migrated_db();
  seed_events(url);
  REQUIRE(count(url, "SELECT count(*) FROM event_journal") == n_events);
  journal_reader r{url};
  for (auto& c : event_cases()) {
    INFO(c.name);
    auto expected = ids_of(url, "SELECT id FROM event_journal WHERE "
                                  + c.where + " ORDER BY id DESC");
    if (std::string{c.name} != "nothing matches"
        && std::string{c.name} != "a tenant outside the scope"
        && std::string{c.name} != "a scope of no tenant")
      CHECK_FALSE(expected.empty()); // the seed covers every case
    for (int limit : {7, 100, 1000}) {
      INFO("limit " << limit);
      CHECK(walk_events(r, c.filter, c.scope, limit) == expected);
    }
  }
}

TEST_CASE("find_page: pages cut by bytes still give every row once",
          "[find]") {
  auto url = migrated_db();
  seed_events(url);
  storage::journal_reader_options o;
  o.max_page_bytes = 3000; // about 30 rows of this seed
  journal_reader r{url, o};
  for (auto& c : event_cases()) {
    INFO(c.name);
    auto expected = ids_of(url, "SELECT id FROM event_journal WHERE "
                                  + c.where + " ORDER BY id DESC");
    size_t pages = 0;
    CHECK(walk_events(r, c.filter, c.scope, 1000, &pages) == expected);
    // Cut by bytes, not by the limit: more pages than the limit alone
    // would need.
    if (expected.size() > 100)
      CHECK(pages > expected.size() / 100);
  }
  // A cut page says so; the last page of a walk does not.
  auto first = r.find_page({}, every_tenant, 1000, 0);
  CHECK(first.truncated);
  CHECK(first.events.size() < 1000);
  auto last = r.find_page({}, every_tenant, 1000, 3);
  CHECK_FALSE(last.truncated);
  CHECK(last.events.size() == 2);
}

TEST_CASE("find_page: the cursor bound, limits, the newest first",
          "[find]") {
  auto url = migrated_db();
  seed_events(url);
  journal_reader r{url};
  auto top = r.find_page({}, every_tenant, 5, 0);
  REQUIRE(top.events.size() == 5);
  CHECK(top.events[0].id == n_events);
  CHECK(top.events[4].id == n_events - 4);
  auto below = r.find_page({}, every_tenant, 3, 100);
  REQUIRE(below.events.size() == 3);
  CHECK(below.events[0].id == 99);
  CHECK(below.events[2].id == 97);
  CHECK(r.find_page({}, every_tenant, 10, 1).events.empty());
  CHECK(r.find_page({}, every_tenant, 0, 0).events.empty());
  // Rows journalled after a walk began do not shift the pages behind the
  // cursor (keyset, not OFFSET).
  auto before_insert = r.find_page({}, every_tenant, 10, 500);
  exec(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
            " \"offset\", payload) VALUES ('a', 'topic.0', 0, 99999, '{}')");
  auto after_insert = r.find_page({}, every_tenant, 10, 500);
  REQUIRE(after_insert.events.size() == 10);
  for (size_t i = 0; i < 10; ++i)
    CHECK(after_insert.events[i].id == before_insert.events[i].id);
  // The filter's rows come with every column.
  event_filter f;
  f.replay_of = 21;
  auto replays = r.find_page(f, every_tenant, 1, 0);
  REQUIRE(replays.events.size() == 1);
  CHECK(replays.events[0].replay_of == 21);
  CHECK(replays.events[0].topic.rfind("topic.", 0) == 0);
}

TEST_CASE("find_page: recent rows, paged through the newest partitions "
          "first, still every row once and in order",
          "[find]") {
  auto url = migrated_db();
  // 400 rows of tenant w, one every 30 minutes up to now (ids in time
  // order, as the service writes them), spanning the 1-day and 7-day
  // windows find_page tries first and the whole journal after them; and 50
  // rows of tenant x a year ago (outside every window).
  exec(url, "SELECT ces_journal_ensure_partitions("
            "now() - interval '9 days', now(), 'day')");
  exec(url, "SELECT ces_journal_ensure_partitions("
            "now() - interval '366 days', now() - interval '364 days',"
            " 'day')");
  exec(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
            " \"offset\", payload, received_at)"
            " SELECT 'x', 't', 0, g, jsonb_build_object('n', g),"
            " now() - interval '365 days' + g * interval '1 s'"
            " FROM generate_series(1, 50) AS g");
  exec(url, "INSERT INTO event_journal (tenant_id, topic, partition,"
            " \"offset\", payload, received_at)"
            " SELECT 'w', 't', 0, g, jsonb_build_object('n', g),"
            " now() - (400 - g) * interval '30 minutes'"
            " FROM generate_series(1, 400) AS g");
  journal_reader r{url};
  for (auto tenant : {"w", "x"}) {
    INFO(tenant);
    event_filter f;
    f.tenant_id = tenant;
    auto expected = ids_of(url, std::string{"SELECT id FROM event_journal"
                                            " WHERE tenant_id = '"}
                                  + tenant + "' ORDER BY id DESC");
    REQUIRE(expected.size() == (std::string{tenant} == "w" ? 400 : 50));
    for (int limit : {7, 30, 100, 1000}) {
      INFO("limit " << limit);
      CHECK(walk_events(r, f, every_tenant, limit) == expected);
    }
  }
  // Every tenant: the newest page comes from tenant w's last day.
  auto top = r.find_page({}, every_tenant, 10, 0);
  REQUIRE(top.events.size() == 10);
  CHECK(top.events[0].id == 450);
  CHECK(top.events[9].id == 441);
}

TEST_CASE("find_dlq: every row once, in order, across pages", "[find]") {
  auto url = migrated_db();
  seed_dlq(url);
  journal_reader r{url};
  tenant_scope star; // every tenant, not the rows without one
  star.all = true;
  struct dlq_case {
    const char* name;
    dlq_filter filter;
    tenant_scope scope;
    std::string where;
  };
  std::vector<dlq_case> cases;
  auto add = [&](const char* name, tenant_scope scope, std::string where,
                 auto set) {
    dlq_case c{name, {}, std::move(scope), std::move(where)};
    set(c.filter);
    cases.push_back(std::move(c));
  };
  add("everything", every_tenant, "true", [](dlq_filter&) {});
  add("every tenant, none unknown", star, "tenant_id IS NOT NULL",
      [](dlq_filter&) {});
  add("pending", every_tenant, "status = 'pending'",
      [](dlq_filter& f) { f.status = "pending"; });
  add("class and topic", every_tenant,
      "error_class = 'invalid_json' AND topic = 'topic.2'",
      [](dlq_filter& f) {
        f.error_class = "invalid_json";
        f.topic = "topic.2";
      });
  add("tenant", every_tenant, "tenant_id = 'c''\"{,}'",
      [](dlq_filter& f) { f.tenant_id = "c'\"{,}"; });
  add("scope a with unknown", only({"a"}, true),
      "(tenant_id = 'a' OR tenant_id IS NULL)", [](dlq_filter&) {});
  add("scope b, retried", only({"b"}),
      "tenant_id = 'b' AND status = 'retried'",
      [](dlq_filter& f) { f.status = "retried"; });
  add("time window", every_tenant,
      "received_at >= '2024-05-01 05:00:00Z'"
      " AND received_at < '2024-05-01 09:30:00Z'",
      [](dlq_filter& f) {
        f.from = "2024-05-01T05:00:00Z";
        f.to = "2024-05-01T09:30:00Z";
      });
  add("unknown tenants only", only({}, true), "tenant_id IS NULL",
      [](dlq_filter&) {});
  add("nothing", only({}), "false", [](dlq_filter&) {});
  for (auto& c : cases) {
    INFO(c.name);
    auto expected = ids_of(url, "SELECT id FROM event_dlq WHERE " + c.where
                                  + " ORDER BY id DESC");
    if (std::string{c.name} != "nothing")
      CHECK_FALSE(expected.empty());
    for (int limit : {9, 250, 1000}) {
      INFO("limit " << limit);
      CHECK(walk_dlq(r, c.filter, c.scope, limit) == expected);
    }
  }
  // latest_dlq is the unfiltered first page.
  auto latest = r.latest_dlq(20, every_tenant);
  auto first = r.find_dlq({}, every_tenant, 20, 0);
  REQUIRE(latest.size() == 20);
  for (size_t i = 0; i < 20; ++i)
    CHECK(latest[i].id == first[i].id);
}

TEST_CASE("dlq_by_id: one row, scoped", "[find]") {
  auto url = migrated_db();
  seed_dlq(url);
  journal_reader r{url};
  // Row 4: tenant 'a' (4 % 4 == 0); row 5: no tenant; row 6: 'c'"{,}'.
  auto a = r.dlq_by_id(4, every_tenant);
  REQUIRE(a);
  CHECK(a->id == 4);
  CHECK(a->tenant_id == "a");
  CHECK(a->offset == 4);
  CHECK(a->payload == "{bad 4");
  CHECK(a->error == "error 4");
  CHECK(r.dlq_by_id(4, only({"a"})));
  CHECK_FALSE(r.dlq_by_id(4, only({"b"})));
  CHECK_FALSE(r.dlq_by_id(4, only({}, true)));
  CHECK(r.dlq_by_id(5, every_tenant));
  CHECK(r.dlq_by_id(5, only({}, true)));
  CHECK_FALSE(r.dlq_by_id(5, only({"a"})));
  tenant_scope star;
  star.all = true;
  CHECK_FALSE(r.dlq_by_id(5, star));
  CHECK(r.dlq_by_id(6, only({"c'\"{,}"})));
  CHECK_FALSE(r.dlq_by_id(n_dlq + 1, every_tenant));
  CHECK_FALSE(r.dlq_by_id(0, every_tenant));
  CHECK_FALSE(r.dlq_by_id(-1, every_tenant));
}
