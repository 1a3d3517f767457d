// storage/backoff.hpp: capped exponential backoff and its jittered form (the
// DLQ's automatic retry schedule).
#include "storage/backoff.hpp"

#include <catch2/catch.hpp>

#include <chrono>

using namespace std::chrono;
using ces::capped_backoff;
using ces::jittered_backoff;

TEST_CASE("capped_backoff doubles from the initial delay up to the cap",
          "[backoff]") {
  auto b = [](uint32_t attempt) {
    return capped_backoff(milliseconds{30000}, milliseconds{3600000},
                          attempt);
  };
  CHECK(b(0) == milliseconds{30000});
  CHECK(b(1) == milliseconds{30000});
  CHECK(b(2) == milliseconds{60000});
  CHECK(b(3) == milliseconds{120000});
  CHECK(b(7) == milliseconds{1920000});
  CHECK(b(8) == milliseconds{3600000}); // 3840000 capped
  CHECK(b(1000000) == milliseconds{3600000}); // no overflow
  // A cap below the initial delay wins.
  CHECK(capped_backoff(seconds{10}, seconds{5}, 1) == seconds{5});
}

TEST_CASE("jittered_backoff scales the capped delay by the factor",
          "[backoff]") {
  auto j = [](uint32_t attempt, double f) {
    return jittered_backoff(milliseconds{1000}, milliseconds{10000}, attempt,
                            f);
  };
  CHECK(j(1, 1.0) == milliseconds{1000});
  CHECK(j(1, 0.5) == milliseconds{500});
  CHECK(j(3, 0.75) == milliseconds{3000}); // 4000 * 0.75
  CHECK(j(10, 0.5) == milliseconds{5000}); // capped at 10000 first
  CHECK(j(10, 1.0) == milliseconds{10000});
  // Factors outside [0, 1] are clamped: never beyond the cap, never
  // negative.
  CHECK(j(10, 3.0) == milliseconds{10000});
  CHECK(j(2, -1.0) == milliseconds{0});
  // Every factor of the DLQ's jitter range lands in [half, whole].
  for (double f = 0.5; f <= 1.0; f += 0.01) {
    auto d = j(4, f);
    CHECK(d >= milliseconds{4000});
    CHECK(d <= milliseconds{8000});
  }
}
