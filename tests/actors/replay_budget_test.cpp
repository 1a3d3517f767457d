#include "actors/replayer.hpp"

#include <catch2/catch.hpp>

using namespace std::chrono_literals;
using ces::replay_budget;

TEST_CASE("replay_budget: per-tenant buckets that say how long to wait") {
  replay_budget b{2, 4}; // 2 events/s, burst 4
  auto t0 = replay_budget::clock::time_point{} + 1h;
  using dur = replay_budget::clock::duration;
  CHECK(b.take("t1", 4, t0) == dur{0}); // the whole burst at once
  // Empty: one more token comes in 500 ms; nothing was taken.
  CHECK(b.take("t1", 1, t0) == dur{500ms});
  CHECK(b.take("t1", 1, t0 + 500ms) == dur{0});
  // A bulk job asking for n tokens is told when n will be there.
  CHECK(b.take("t1", 3, t0 + 500ms) == dur{1500ms});
  // More than the burst: never.
  CHECK(b.take("t1", 5, t0 + 10s) == dur::max());
  // Another tenant has its own bucket.
  CHECK(b.take("t2", 4, t0) == dur{0});
  CHECK(b.rate() == 2);
  CHECK(b.burst() == 4);
}
