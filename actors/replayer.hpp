// REPLAYER: the only actor that publishes. Republishes a journalled event to
// its original topic and partition with its original key and headers, plus
// provenance headers (x-replay-of: <journal id>, x-replay-id: <uuid>), and
// answers once the broker's delivery report arrived. When the replayed
// message is consumed again, it is journalled as a new row whose replay_of is
// the original id: the audit trail.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/kafka/replay_producer.hpp"

#include <chrono>
#include <map>
#include <memory>
#include <string>

namespace ces {

class metrics;

struct replayer_settings {
  replay_producer_config producer;
  std::string database_url;
  /// How often delivery reports are served while replays are in flight.
  std::chrono::milliseconds poll_interval{5};
  /// Longest wait for the broker during a graceful stop.
  std::chrono::milliseconds flush_timeout{5000};
  /// Longest wait for a metadata answer (readiness probe, and the check
  /// before a replay while librdkafka reports the broker away).
  int ping_timeout_ms = 1000;
};

struct replayer_state {
  struct pending {
    caf::typed_response_promise<replay_result> promise;
    int64_t event_id = 0;
    std::string topic;
    std::string replay_id;
  };
  std::unique_ptr<storage::journal_reader> reader;
  std::unique_ptr<replay_producer> producer;
  std::map<uint64_t, pending> in_flight; // by produce token
  uint64_t next_token = 1;
  bool polling = false;
  metrics* stats = nullptr;
  static inline const char* name = "replayer";
};

replayer_actor::behavior_type
replayer(replayer_actor::stateful_pointer<replayer_state> self,
         replayer_settings cfg, metrics* stats);

} // namespace ces
