// storage::migrate against a throwaway PostgreSQL.
#include "storage/journal.hpp"
#include "storage/journal_reader.hpp"
#include "storage/migrations.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <exception>
#include <thread>

using namespace ces;
using namespace ces::test;

namespace {

std::vector<int> all_versions() {
  std::vector<int> out;
  for (auto& m : storage::embedded_migrations())
    out.push_back(m.version);
  return out;
}

} // namespace

TEST_CASE("embedded migrations are numbered and ordered", "[migrate]") {
  auto& all = storage::embedded_migrations();
  REQUIRE_FALSE(all.empty());
  CHECK(all.front().version == 1);
  CHECK(std::string(all.front().name) == "0001_initial.sql");
  CHECK(std::string(all.front().sql).find("CREATE TABLE event_journal")
        != std::string::npos);
  for (size_t i = 1; i < all.size(); ++i)
    CHECK(all[i - 1].version < all[i].version);
}

TEST_CASE("migrate applies each migration once", "[migrate]") {
  auto url = shared_pg().create_database();
  auto first = storage::migrate(url);
  CHECK(first == all_versions());
  auto second = storage::migrate(url);
  CHECK(second.empty());
  CHECK(count(url, "SELECT count(*) FROM schema_migrations")
        == static_cast<long>(all_versions().size()));
  CHECK(scalar(url, "SELECT name FROM schema_migrations WHERE version = 1")
        == "0001_initial.sql");
  CHECK(scalar(url, "SELECT applied_at IS NOT NULL FROM schema_migrations"
                    " WHERE version = 1")
        == "t");
  for (auto table : {"event_journal", "event_dlq", "journal_offsets",
                      "legacy_group_offsets"})
    CHECK(scalar(url, std::string("SELECT to_regclass('") + table
                        + "') IS NOT NULL")
          == "t");
  // The advisory lock was released.
  CHECK(count(url, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        == 0);
}

TEST_CASE("concurrent migrate calls apply migrations exactly once",
          "[migrate]") {
  for (int round = 0; round < 3; ++round) {
    auto url = shared_pg().create_database();
    std::vector<int> a, b;
    std::exception_ptr ea, eb;
    std::thread ta{[&] {
      try {
        a = storage::migrate(url);
      } catch (...) {
        ea = std::current_exception();
      }
    }};
    std::thread tb{[&] {
      try {
        b = storage::migrate(url);
      } catch (...) {
        eb = std::current_exception();
      }
    }};
    ta.join();
    tb.join();
    REQUIRE_FALSE(ea);
    REQUIRE_FALSE(eb);
    // One of them applied everything, the other nothing.
    CHECK(((a == all_versions() && b.empty())
           || (b == all_versions() && a.empty())));
    CHECK(count(url, "SELECT count(*) FROM schema_migrations")
          == static_cast<long>(all_versions().size()));
  }
}

TEST_CASE("a failing migration names its file", "[migrate]") {
  auto url = shared_pg().create_database();
  // A table in the way of 0001.
  exec(url, "CREATE TABLE event_journal (x int)");
  try {
    storage::migrate(url);
    FAIL("migrate succeeded");
  } catch (const storage::infra_error& e) {
    FAIL("infra_error: " << e.what());
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::Contains("0001_initial.sql")
                           && Catch::Contains("already exists"));
  }
  // Nothing of 0001 was kept.
  CHECK(count(url, "SELECT count(*) FROM schema_migrations") == 0);
  CHECK(scalar(url, "SELECT to_regclass('event_dlq') IS NULL") == "t");
}

TEST_CASE("an unreachable server is an infra_error", "[migrate]") {
  // Port 1 on 127.0.0.1: connection refused.
  std::string url = "postgresql://postgres@127.0.0.1:1/nowhere";
  CHECK_THROWS_AS(storage::migrate(url), storage::infra_error);
  CHECK_THROWS_AS(storage::journal_writer(url, "g"), storage::infra_error);
  CHECK_THROWS_AS(storage::load_offsets(url, "g", {"t"}),
                  storage::infra_error);
  CHECK_THROWS_AS(storage::journal_reader(url).ping(), storage::infra_error);
  CHECK_THROWS_WITH(storage::migrate(url),
                    Catch::Contains("cannot connect to PostgreSQL"));
}

TEST_CASE("upgrading keeps the group-keyed offsets as a seed (0003)",
          "[migrate][fence]") {
  // A database of the previous release: migrations 1 and 2, offsets of two
  // groups in consumer_offsets.
  auto url = shared_pg().create_database();
  exec(url, "CREATE TABLE schema_migrations (version integer PRIMARY KEY,"
            " name text, applied_at timestamptz DEFAULT now())");
  for (auto& m : storage::embedded_migrations())
    if (m.version <= 2) {
      exec(url, m.sql);
      exec(url, "INSERT INTO schema_migrations (version, name) VALUES ("
                  + std::to_string(m.version) + ", '" + m.name + "')");
    }
  exec(url, "INSERT INTO consumer_offsets (group_id, topic, partition,"
            " next_offset) VALUES ('a', 't', 0, 100), ('a', 't', 1, 7),"
            " ('b', 't', 0, 40)");
  auto applied = storage::migrate(url);
  REQUIRE_FALSE(applied.empty());
  CHECK(applied.front() == 3);
  CHECK(scalar(url, "SELECT to_regclass('consumer_offsets') IS NULL") == "t");
  CHECK(count(url, "SELECT count(*) FROM journal_offsets") == 0);
  CHECK(count(url, "SELECT sum(next_offset) FROM legacy_group_offsets")
        == 147);
  // The first start of group a on cluster C adopts a's rows, once; b's wait
  // for b's first start; a group without rows has nothing to adopt.
  CHECK(storage::legacy_offsets_pending(url, "a"));
  CHECK(storage::legacy_offsets_pending(url, "b"));
  CHECK_FALSE(storage::legacy_offsets_pending(url, "c"));
  CHECK(storage::adopt_group_offsets(url, "C", "a") == 2);
  CHECK(storage::adopt_group_offsets(url, "C", "a") == 0);
  CHECK_FALSE(storage::legacy_offsets_pending(url, "a"));
  CHECK(storage::legacy_offsets_pending(url, "b"));
  CHECK(scalar(url, "SELECT string_agg(cluster_id || '/' || topic || '/'"
                    " || partition || '@' || next_offset, ','"
                    " ORDER BY partition) FROM journal_offsets")
        == "C/t/0@100,C/t/1@7");
  CHECK(count(url, "SELECT count(*) FROM legacy_group_offsets") == 1);
  auto loaded = storage::load_offsets(url, "C", {"t"});
  REQUIRE(loaded.size() == 2);
  CHECK(loaded[0].next_offset == 100);
  CHECK(loaded[1].next_offset == 7);
}
