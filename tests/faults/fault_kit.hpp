// Tools of the fault-injection suite (tests/faults/): the invariant
// "journal ∪ DLQ = produced, each exactly once, by (topic, partition,
// offset)", a background sampler of the sink's metrics and RSS, recovery
// timing, the sink's JSON log, Kafka's committed offsets, and the one line of
// figures every case prints. No Catch2 here: the cases decide what to assert.
#pragma once

#include "tests/e2e/harness.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace ces::faults {

using namespace ces::e2e;
using clock_type = std::chrono::steady_clock;

/// Seconds between two time points.
double seconds(clock_type::time_point from, clock_type::time_point to);

/// Scale of the opt-in soak variants: CES_FAULTS_SOAK=N (default 1)
/// multiplies load durations and fault cycles.
int soak_factor();

/// Partitions per topic so that `events` (~650 bytes each) over `topics`
/// topics stay well under the mock broker's ~5 MiB per partition
/// (actors/kafka/embedded_broker.hpp), and at least `minimum`.
int partitions_for(long long events, int topics, int minimum);

// -- The invariant ------------------------------------------------------------

struct tally {
  size_t produced = 0;        // manifest entries
  size_t produced_poison = 0; // of which poison (kind != ok)
  size_t journalled = 0;      // event_journal rows
  size_t dead_lettered = 0;   // event_dlq rows
  size_t duplicates = 0;      // coordinates stored more than once (journal,
                              // DLQ, or both)
  size_t missing = 0;         // produced, stored nowhere
  size_t unexpected = 0;      // stored, never produced
  /// Journal rows at a coordinate the producer never acknowledged whose
  /// event_id another journalled record carries: the broker stored one
  /// produce twice (a retry across an outage). Each is a distinct Kafka
  /// record journalled once, so they do not break the invariant.
  size_t broker_duplicates = 0;
  size_t misplaced = 0;       // valid event in the DLQ / poison in the journal
  size_t wrong_class = 0;     // DLQ error_class differs from the manifest's
  std::vector<std::string> examples; // a few offending coordinates

  bool holds() const {
    return duplicates == 0 && missing == 0 && unexpected == 0
           && misplaced == 0 && wrong_class == 0;
  }
  std::string describe() const;
};

/// Compares event_journal and event_dlq with the manifest.
tally check_invariant(const world& w, const std::vector<manifest_entry>& m);

/// Rows in event_journal + event_dlq, or -1 if PostgreSQL does not answer.
long long stored_rows(const world& w);

/// Waits until stored_rows() >= n.
bool wait_stored(const world& w, long long n, std::chrono::milliseconds timeout);

/// Polls stored_rows() every 20 ms until it reaches `target`; returns the
/// seconds from `since` to that moment, or -1 after `timeout`.
double time_to_store(const world& w, long long target,
                     clock_type::time_point since,
                     std::chrono::milliseconds timeout);

// -- The broker ---------------------------------------------------------------

using partition_key = std::pair<std::string, int32_t>;

/// High watermark of every partition: world::high_watermarks() (the mock's
/// control channel if the world has one, else asked with librdkafka).
std::map<partition_key, int64_t> broker_highs(world& w);

/// The leader (broker node id) of every partition of the world's topics,
/// from a metadata request (librdkafka); -1 while a partition has none.
std::map<partition_key, int32_t> partition_leaders(const world& w);

/// Every (topic, partition, offset) below the broker's high watermarks is
/// stored exactly once (journal or DLQ), including the records the service
/// itself published (replays); `produced` counts those coordinates.
tally check_against_broker(world& w);

/// The group's committed offsets in Kafka (OffsetFetch with librdkafka, no
/// group join); partitions without a commit are left out.
std::map<partition_key, int64_t>
kafka_committed(const world& w, const std::string& group, int partitions);

// -- The sink's metrics and memory, sampled in the background -----------------

/// Sum of every sample of metric `name` (all label sets), -1 if absent.
double metric_sum(const std::string& exposition, const std::string& name);

/// VmRSS of a process in KiB, -1 if unknown.
long rss_kib(pid_t pid);

struct sample {
  double t = 0; // seconds since the sampler started
  double in_flight = -1;
  double db_up = -1;
  double ingested = -1;
  double persisted = -1;
  double dead_lettered = -1;
  double skipped = -1;
  double restarts = -1;
  long rss_kib = -1;
  int ready = 0;        // HTTP status of GET /ready (0: no answer/not asked)
  bool scraped = false; // the metrics answered
};

/// Scrapes /metrics (and /proc/PID/status) of one sink every `period`.
class sampler {
public:
  explicit sampler(std::chrono::milliseconds period
                   = std::chrono::milliseconds{100});
  ~sampler();
  sampler(const sampler&) = delete;
  sampler& operator=(const sampler&) = delete;

  /// (Re)targets the sampler, e.g. after a restart of the sink; with an
  /// `http_port`, GET /ready is sampled too.
  void watch(pid_t pid, uint16_t metrics_port, uint16_t http_port = 0);
  void stop();

  double now() const;
  std::vector<sample> samples() const;
  /// Samples with from <= t < to.
  std::vector<sample> between(double from, double to) const;
  /// The last sample that scraped the metrics.
  sample last() const;

private:
  void run();

  std::chrono::milliseconds period_;
  clock_type::time_point start_;
  mutable std::mutex mtx_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  uint16_t http_port_ = 0;
  std::vector<sample> samples_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

/// One scrape now: the sums of the crm_* counters of a sink.
sample scrape(uint16_t metrics_port);

// -- The sink's JSON log --------------------------------------------------------

/// Every JSON line of the log file from byte `from` on whose "event" is
/// `event` (every line when empty).
std::vector<nlohmann::json> log_events(const std::string& path,
                                       const std::string& event = "",
                                       size_t from = 0);

/// The partitions a sink owns according to its log from byte `from` on
/// (partitions_assigned adds, partitions_revoked removes), sorted.
std::vector<partition_key> owned_partitions(const std::string& log_path,
                                            size_t from = 0);

/// Every partitions_assigned line of the log from byte `from` on: the
/// partitions with the offset the sink starts them at (-1: none given, i.e.
/// not from PostgreSQL).
std::vector<std::map<partition_key, int64_t>>
assignments(const std::string& log_path, size_t from = 0);

size_t file_size(const std::string& path);

// -- Figures --------------------------------------------------------------------

/// The line each case prints:
///   FAULT case=<name> produced=... journalled=... dead_lettered=...
///   duplicates=... missing=... recovery_s=... peak_in_flight=... ...
///   notes="..."
/// Printed on stdout and, when CES_FAULTS_FIGURES names a file, appended to
/// it (to collect a table from a whole run).
struct figures {
  std::string name;
  tally t;
  double recovery_s = -1;     // meaning defined by each case
  double first_commit_s = -1; // fault end -> first new commit
  double peak_in_flight = -1;
  double elapsed_s = -1;      // the whole case
  std::vector<std::pair<std::string, std::string>> extra; // key=value
  std::string notes;

  void add(const std::string& key, const std::string& value) {
    extra.emplace_back(key, value);
  }
  void add(const std::string& key, double value);
  std::string line() const;
  void print() const;
};

} // namespace ces::faults
