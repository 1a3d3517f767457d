// storage::idempotency_store against a throwaway PostgreSQL: claims, stored
// answers, fingerprints, principals, concurrent claims from two connections,
// pending claims that expire, answers older than the ttl, purge.
#include "storage/idempotency.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

using namespace ces;
using namespace ces::test;
using storage::idempotency_store;

namespace {

using header_list = std::vector<std::pair<std::string, std::string>>;

} // namespace

TEST_CASE("claim, complete, and the stored answer", "[idempotency]") {
  auto url = migrated_db();
  idempotency_store store{url};
  auto first = store.claim("ops", "k1", "POST /replay/1 aa");
  CHECK(first.state == "new");
  auto again = store.claim("ops", "k1", "POST /replay/1 aa");
  CHECK(again.state == "pending");
  CHECK(again.retry_after_s >= 1);
  CHECK(again.retry_after_s <= 5);
  // Another request with the same key: refused whether pending or done.
  CHECK(store.claim("ops", "k1", "POST /replay/2 aa").state == "mismatch");
  header_list hs{{"Location", "/jobs/7"}, {"X-Two", "a \"b\" \\c"}};
  REQUIRE(store.complete("ops", "k1", 202, R"({"job_id":7})", hs));
  auto done = store.claim("ops", "k1", "POST /replay/1 aa");
  CHECK(done.state == "done");
  CHECK(done.status == 202);
  CHECK(done.body == R"({"job_id":7})");
  CHECK(done.headers == hs);
  CHECK(store.claim("ops", "k1", "POST /replay/2 aa").state == "mismatch");
  // Completing twice changes nothing.
  CHECK_FALSE(store.complete("ops", "k1", 500, "{}", {}));
  CHECK(store.claim("ops", "k1", "POST /replay/1 aa").status == 202);
  // Keys are per principal.
  CHECK(store.claim("jwt:alice", "k1", "POST /replay/2 aa").state == "new");
  CHECK(store.claim("jwt:alice", "k1", "POST /replay/2 aa").state
        == "pending");
  // An answer without headers.
  CHECK(store.claim("ops", "k2", "f").state == "new");
  REQUIRE(store.complete("ops", "k2", 200, "{}", {}));
  auto plain = store.claim("ops", "k2", "f");
  CHECK(plain.state == "done");
  CHECK(plain.headers.empty());
}

TEST_CASE("release gives the key back", "[idempotency]") {
  auto url = migrated_db();
  idempotency_store store{url};
  REQUIRE(store.claim("ops", "k", "f1").state == "new");
  CHECK(store.release("ops", "k"));
  CHECK_FALSE(store.release("ops", "k"));
  // Free again, even for another request.
  CHECK(store.claim("ops", "k", "f2").state == "new");
  REQUIRE(store.complete("ops", "k", 200, "{}", {}));
  // A stored answer is not released.
  CHECK_FALSE(store.release("ops", "k"));
  CHECK(store.claim("ops", "k", "f2").state == "done");
}

TEST_CASE("concurrent claims from two connections: one new, one pending",
          "[idempotency]") {
  auto url = migrated_db();
  constexpr int keys = 200;
  std::atomic<int> ready{0};
  std::vector<std::string> a(keys);
  std::vector<std::string> b(keys);
  auto claimer = [&](std::vector<std::string>& out) {
    idempotency_store store{url};
    store.claim("warm-up", "w", "f"); // connect before the race
    ready.fetch_add(1);
    while (ready.load() < 2)
      std::this_thread::yield();
    for (int i = 0; i < keys; ++i)
      out[i] = store.claim("ops", "key-" + std::to_string(i), "f").state;
  };
  std::thread t1{claimer, std::ref(a)};
  std::thread t2{claimer, std::ref(b)};
  t1.join();
  t2.join();
  for (int i = 0; i < keys; ++i) {
    INFO("key-" << i << ": " << a[i] << ", " << b[i]);
    CHECK(((a[i] == "new" && b[i] == "pending")
           || (a[i] == "pending" && b[i] == "new")));
  }
  CHECK(count(url, "SELECT count(*) FROM idempotency_keys"
                   " WHERE principal = 'ops'")
        == keys);
}

TEST_CASE("an expired pending claim is taken over", "[idempotency]") {
  auto url = migrated_db();
  storage::idempotency_options o;
  o.pending_ttl = std::chrono::seconds{60};
  idempotency_store store{url, o};
  REQUIRE(store.claim("ops", "k", "f1").state == "new");
  CHECK(scalar(url, "SELECT pending_until > now() + interval '50 seconds'"
                    " AND pending_until < now() + interval '70 seconds'"
                    " FROM idempotency_keys")
        == "t");
  CHECK(store.claim("ops", "k", "f1").state == "pending");
  exec(url, "UPDATE idempotency_keys"
            " SET pending_until = now() - interval '1 second'");
  // The first request's outcome was never stored: the key is free again,
  // for the same request or another.
  CHECK(store.claim("ops", "k", "f2").state == "new");
  CHECK(store.claim("ops", "k", "f2").state == "pending");
  CHECK(store.complete("ops", "k", 201, "{\"second\":1}", {}));
  CHECK(store.claim("ops", "k", "f2").body == "{\"second\":1}");
}

TEST_CASE("answers older than the ttl are ignored, then purged",
          "[idempotency]") {
  auto url = migrated_db();
  storage::idempotency_options o;
  o.ttl = std::chrono::hours{24};
  idempotency_store store{url, o};
  for (auto key : {"old", "young"}) {
    REQUIRE(store.claim("ops", key, "f").state == "new");
    REQUIRE(store.complete("ops", key, 200, "{}", {}));
  }
  REQUIRE(store.claim("ops", "old-pending", "f").state == "new");
  exec(url, "UPDATE idempotency_keys"
            " SET created_at = now() - interval '25 hours'"
            " WHERE key IN ('old', 'old-pending')");
  CHECK(store.claim("ops", "young", "f").state == "done");
  CHECK(store.purge() == 2);
  CHECK(count(url, "SELECT count(*) FROM idempotency_keys") == 1);
  CHECK(store.claim("ops", "old", "f").state == "new");
  // An old row not yet purged is taken over by a claim too.
  REQUIRE(store.complete("ops", "old", 200, "{}", {}));
  exec(url, "UPDATE idempotency_keys"
            " SET created_at = now() - interval '25 hours'"
            " WHERE key = 'old'");
  CHECK(store.claim("ops", "old", "other").state == "new");
}

TEST_CASE("PostgreSQL down: infra_error, then it reconnects",
          "[idempotency]") {
  idempotency_store store{"postgresql://127.0.0.1:1/nothing"};
  CHECK_THROWS_AS(store.claim("ops", "k", "f"), storage::infra_error);
  CHECK_FALSE(store.connected());
}
