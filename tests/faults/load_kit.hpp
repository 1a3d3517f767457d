// Load and small helpers shared by the fault cases (header-only).
#pragma once

#include "tests/faults/fault_kit.hpp"

#include <algorithm>
#include <cmath>
#include <csignal>
#include <iostream>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ces::faults {

/// Cases that need one kind of broker: the reason they cannot run on this
/// one, empty when they can. CES_SKIP_IF prints it (std::cout and a Catch2
/// WARN, "SKIPPED: ...", which ctest's SKIP_REGULAR_EXPRESSION in
/// tests/faults/CMakeLists.txt reports as a skip) and returns.
/// A case that needs the mock's fault control (down/up, rtt, errors):
inline std::string skip_on_real(const std::string& needs) {
  return ces::e2e::real_kafka()
           ? "needs " + needs + ": not on the real broker (CES_TEST_KAFKA=real)"
           : "";
}
/// A case that needs Apache Kafka (broker restarts, leader elections):
inline std::string skip_on_mock(const std::string& needs) {
  return ces::e2e::real_kafka()
           ? ""
           : "needs the real broker (" + needs + "): CES_TEST_KAFKA=real";
}
#define CES_SKIP_IF(reason)                                                   \
  do {                                                                        \
    if (auto why_ = (reason); !why_.empty()) {                                \
      std::cout << "SKIPPED: " << why_ << std::endl;                          \
      WARN("SKIPPED: " << why_);                                              \
      return;                                                                 \
    }                                                                         \
  } while (0)

inline void pause_s(double s) {
  std::this_thread::sleep_for(std::chrono::duration<double>(s));
}

/// crm-produce in the background, paced at `rate` for `secs` seconds.
struct load {
  child_process proc;
  std::string manifest_path;
  clock_type::time_point started;
  long long count = 0;
  double rate = 0;

  /// What the producer has produced by `t` (by its pacing).
  long long produced_by(clock_type::time_point t) const {
    return std::min<long long>(
      count, std::llround(rate * std::max(0.0, seconds(started, t))));
  }
};

inline load start_load(world& w, double rate, double secs,
                std::vector<std::string> extra = {}) {
  auto count = std::llround(rate * secs);
  std::vector<std::string> args{"--count", std::to_string(count), "--rate",
                                std::to_string(static_cast<long long>(rate))};
  args.insert(args.end(), extra.begin(), extra.end());
  std::string path;
  auto p = w.start_producer(args, path);
  return load{std::move(p), path, clock_type::now(), count, rate};
}

/// Waits for the producer's exit (0: everything delivered) and returns its
/// manifest, checked to be complete against the producer's summary line
/// (`produced=N delivered=N failed=0`).
inline std::vector<manifest_entry> finish(load& l, std::chrono::seconds timeout
                                            = 180s) {
  auto st = l.proc.wait_exit(timeout);
  if (!st || !st->success())
    throw std::runtime_error("crm-produce failed: " + l.proc.describe());
  auto manifest = read_manifest(l.manifest_path);
  auto out = l.proc.stdout_text();
  auto field = [&](const std::string& key) -> long long {
    auto pos = out.find(" " + key + "=");
    return pos == std::string::npos
             ? -1
             : std::atoll(out.c_str() + pos + key.size() + 2);
  };
  auto produced = field("produced");
  if (produced != field("delivered") || field("failed") != 0
      || produced != static_cast<long long>(manifest.size()))
    throw std::runtime_error("crm-produce: incomplete manifest ("
                             + std::to_string(manifest.size())
                             + " entries): " + out);
  return manifest;
}

/// Stops an open-ended load (SIGTERM: crm-produce stops producing, waits
/// for every delivery report, writes its manifest and exits 0).
inline std::vector<manifest_entry> stop_load(load& l) {
  l.proc.signal(SIGTERM);
  return finish(l);
}

/// Kafka settings that keep the mock broker's group delays short
/// (actors/kafka/embedded_broker.hpp: a rebalance waits up to session.timeout.ms -
/// 1 s for the members, a dead member is noticed after session.timeout.ms).
/// 3000 is as low as it goes: with 2000 the mock's 3 s first-join delay
/// outlasts the session and the member never gets an assignment.
inline const std::vector<std::string> fast_group{
  "--kafka-session-timeout-ms=3000",
  "--kafka-properties=heartbeat.interval.ms=500"};

inline std::vector<std::string> with(std::vector<std::string> a,
                              const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline long long sum(const std::map<partition_key, int64_t>& xs) {
  long long n = 0;
  for (auto& [k, v] : xs)
    n += v;
  return n;
}

inline size_t count_events(const world& w, const std::string& event, size_t from = 0,
                    int instance = 0) {
  return log_events(w.sink_log(instance), event, from).size();
}

} // namespace ces::faults
