// Capped exponential backoff, CAF-free: the SUPERVISOR's restarts, the
// PERSISTER's PostgreSQL retries and the start-up migration's retries use it.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ces {

/// Exponential backoff: `initial` doubled for each attempt after the first
/// (1-based), capped at `max`. Works on any std::chrono::duration.
template <class Duration>
Duration capped_backoff(Duration initial, Duration max, uint32_t attempt) {
  auto result = initial;
  for (uint32_t i = 1; i < attempt && result < max; ++i)
    result *= 2;
  return std::min(result, max);
}

} // namespace ces
