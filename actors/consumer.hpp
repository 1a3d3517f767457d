// CONSUMER: polls records, validates them, cuts batches (by count and linger)
// and hands them to the PERSISTERs — each partition always to the same one,
// so that their transactions lock disjoint offset rows and commit in
// parallel — never more than `max_in_flight` per persister at once:
// at the bound it stops calling consume() (backpressure; librdkafka's
// prefetch queue is capped) until an acknowledgement arrives. When the stall
// lasts (PostgreSQL down) it pauses its partitions, which drops the prefetch
// and keeps memory flat, and keeps serving group callbacks so the group does
// not evict it. Short stalls (every commit) do not pause: librdkafka 2.0.2
// stops fetching for about a second after every resume. After each acknowledged batch it commits
// the stored offsets to Kafka too, so standard lag tools work. It monitors
// its PERSISTERs: one that dies never answers the batches it held (CAF 0.17
// sends no error for a dropped response promise), so their DOWN counts those
// batches lost (uncommitted; Kafka redelivers them) and stops the polling;
// a stop request then ends the CONSUMER at once, never waiting on the dead.
// Every second it publishes crm_consumer_lag_records per assigned partition:
// the source's cached high watermark minus the journal's position (the
// acknowledged next offset, else where consumption started).
// Offsets the broker deleted before they were read (retention; the source
// finds them) are reported, not waited for: one offsets_lost log line and
// crm_kafka_offsets_lost_total per gap, and consumption goes on.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/record_source.hpp"
#include "storage/validate.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>

namespace ces {

class metrics;

struct consumer_settings {
  size_t batch_max_records = 5000;
  std::chrono::milliseconds linger{20};
  size_t max_in_flight = 2;
  validation_limits limits;
  /// Longest blocking wait for a record while no batch is open.
  std::chrono::milliseconds idle_wait{100};
  /// How often a stalled consumer checks in (and, once paused, serves
  /// group callbacks).
  std::chrono::milliseconds keepalive{1000};
  /// A stall at the in-flight bound longer than this pauses the partitions.
  std::chrono::milliseconds pause_after{1000};
  /// How often crm_consumer_lag_records is recomputed (from cached
  /// watermarks: no broker round trip).
  std::chrono::milliseconds lag_interval{1000};
};

using source_factory = std::function<std::unique_ptr<record_source>()>;

struct consumer_state {
  std::unique_ptr<record_source> source;
  /// Partition p of topic t goes to persisters[route(t, p) % size].
  std::vector<persister_actor> persisters;
  /// Unacknowledged batches per persister (same index).
  std::vector<size_t> in_flight_per;
  /// Persisters that ended (a DOWN): their batches were counted lost.
  std::vector<bool> gone;
  consumer_settings cfg;
  metrics* stats = nullptr;
  std::vector<checked_record> building;
  std::chrono::steady_clock::time_point batch_started;
  uint64_t next_seq = 0;
  size_t in_flight = 0; // sum of in_flight_per
  bool paused = false;
  /// Since when the in-flight bound holds polling back (none: not stalled).
  /// (The actor clock: simulated in actor tests.)
  std::optional<caf::actor_clock::time_point> stalled_since;
  bool keepalive_pending = false;
  bool poll_pending = false;
  bool stopping = false; // graceful stop: drain in-flight batches, then quit
  bool broken = false;   // the PERSISTER failed; wait for the SUPERVISOR
  /// Latest acknowledged next offset per (topic, partition).
  std::map<std::pair<std::string, int32_t>, int64_t> acked;
  bool finished = false; // the source is closed
  static inline const char* name = "consumer";
};

consumer_actor::behavior_type
consumer(consumer_actor::stateful_pointer<consumer_state> self,
         source_factory make_source, std::vector<persister_actor> persisters,
         consumer_settings cfg, metrics* stats);

/// Which of `n` persisters journals (topic, partition): stable for the life
/// of the process (FNV-1a of the topic, mixed with the partition).
size_t persister_for(const std::string& topic, int32_t partition, size_t n);

} // namespace ces
