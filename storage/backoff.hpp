// Capped exponential backoff, CAF-free: the SUPERVISOR's restarts, the
// PERSISTER's PostgreSQL retries, the start-up migration's retries and the
// DLQ's automatic retries (with jitter) use it.
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

/// capped_backoff() times `factor` (the jitter the caller draws, e.g.
/// uniform in [0.5, 1.0]; clamped to [0, 1]), rounded down.
template <class Duration>
Duration jittered_backoff(Duration initial, Duration max, uint32_t attempt,
                          double factor) {
  factor = std::clamp(factor, 0.0, 1.0);
  auto base = capped_backoff(initial, max, attempt);
  return Duration(static_cast<typename Duration::rep>(
    static_cast<double>(base.count()) * factor));
}

} // namespace ces
