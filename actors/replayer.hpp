// REPLAYER: the only actor that publishes. Republishes a journalled event to
// its original topic and partition with its original key and headers, plus
// provenance headers (x-replay-of: <journal id>, x-replay-id: <uuid>), and
// answers once the broker's delivery report arrived. When the replayed
// message is consumed again, it is journalled as a new row whose replay_of is
// the original id: the audit trail. Every replay is recorded (table replays,
// with an audit_log row, in one transaction) before it is published: the
// journal honours the provenance headers only for recorded replays. A
// per-tenant token bucket bounds how fast a tenant's events are replayed.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/kafka/replay_producer.hpp"
#include "api/auth.hpp"

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
  /// Per-tenant replay budget: events per second and burst
  /// (settings::replay_rate_per_tenant / replay_burst_per_tenant).
  double replay_rate_per_tenant = 50;
  double replay_burst_per_tenant = 100;
};

/// The per-tenant replay budget: one token bucket per tenant, shared by
/// single replays (refused when over budget) and bulk replay jobs (which
/// wait instead). Not thread-safe: owned by the REPLAYER's state.
class replay_budget {
public:
  using clock = auth::keyed_buckets::clock;

  replay_budget(double rate, double burst);

  /// Takes `n` tokens of `tenant`'s bucket. Zero when taken; else nothing
  /// is taken and the result is how long until there will be `n` tokens
  /// (clock::duration::max() when never: n > burst).
  clock::duration take(const std::string& tenant, double n,
                       clock::time_point now = clock::now());

  double rate() const noexcept {
    return rate_;
  }
  double burst() const noexcept {
    return burst_;
  }

private:
  double rate_;
  double burst_;
  auth::keyed_buckets buckets_;
};

struct replayer_state {
  struct pending {
    caf::typed_response_promise<replay_result> promise;
    int64_t event_id = 0;
    std::string topic;
    std::string replay_id;
    requester who;
  };
  std::unique_ptr<storage::journal_reader> reader;
  std::unique_ptr<replay_producer> producer;
  std::map<uint64_t, pending> in_flight; // by produce token
  std::unique_ptr<replay_budget> budget;
  uint64_t next_token = 1;
  bool polling = false;
  metrics* stats = nullptr;
  static inline const char* name = "replayer";
};

replayer_actor::behavior_type
replayer(replayer_actor::stateful_pointer<replayer_state> self,
         replayer_settings cfg, metrics* stats);

} // namespace ces
