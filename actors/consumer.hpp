// CONSUMER: polls records, validates them, cuts batches (by count and linger)
// and hands them to the PERSISTER, never more than `max_in_flight` at once:
// at the bound it pauses its partitions and stops polling (backpressure)
// until an acknowledgement arrives. After each acknowledged batch it commits
// the stored offsets to Kafka too, so standard lag tools work.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/record_source.hpp"
#include "storage/validate.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <utility>

namespace ces {

class metrics;

struct consumer_settings {
  size_t batch_max_records = 5000;
  std::chrono::milliseconds linger{50};
  size_t max_in_flight = 2;
  validation_limits limits;
  /// Longest blocking wait for a record while no batch is open.
  std::chrono::milliseconds idle_wait{100};
  /// How often group callbacks are served while paused.
  std::chrono::milliseconds keepalive{1000};
};

using source_factory = std::function<std::unique_ptr<record_source>()>;

struct consumer_state {
  std::unique_ptr<record_source> source;
  persister_actor persister;
  consumer_settings cfg;
  metrics* stats = nullptr;
  std::vector<checked_record> building;
  std::chrono::steady_clock::time_point batch_started;
  uint64_t next_seq = 0;
  size_t in_flight = 0;
  bool paused = false;
  bool poll_pending = false;
  bool stopping = false; // graceful stop: drain in-flight batches, then quit
  bool broken = false;   // the PERSISTER failed; wait for the SUPERVISOR
  /// Latest acknowledged next offset per (topic, partition).
  std::map<std::pair<std::string, int32_t>, int64_t> acked;
  static inline const char* name = "consumer";
};

consumer_actor::behavior_type
consumer(consumer_actor::stateful_pointer<consumer_state> self,
         source_factory make_source, persister_actor persister,
         consumer_settings cfg, metrics* stats);

} // namespace ces
