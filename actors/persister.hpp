// PERSISTER: the only writer of event_journal. Each batch is one transaction
// (COPY journal rows, DLQ rows, next offsets) through storage::journal_writer.
// Infrastructure errors (connection lost, server restarting) keep the batch
// at the head of a small queue and retry it with capped exponential backoff;
// nothing is acknowledged meanwhile, so the CONSUMER stalls at its in-flight
// bound. Anything else unexpected crashes the actor for the SUPERVISOR.
#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>

namespace ces {

class metrics;

/// The storage operation the PERSISTER runs for one batch (its records,
/// fenced by its Kafka cluster id). Production code wraps
/// storage::journal_writer; tests substitute a fake. Throws
/// storage::infra_error on retryable failures.
class batch_writer {
public:
  virtual ~batch_writer() = default;
  virtual persist_outcome write(const batch& job) = 0;
};

using writer_factory = std::function<std::unique_ptr<batch_writer>()>;

struct persister_settings {
  /// The SUPERVISOR's name of this instance ("persister-1"), for its logs.
  std::string name = "persister";
  std::chrono::milliseconds retry_initial{200};
  std::chrono::milliseconds retry_max{5000};
};

struct persister_state {
  struct pending {
    batch job;
    caf::typed_response_promise<persist_outcome> promise;
  };
  writer_factory make_writer;
  std::unique_ptr<batch_writer> writer; // null until connected
  std::deque<pending> queue;            // bounded by the consumer's in-flight
  persister_settings cfg;
  metrics* stats = nullptr;
  uint32_t failures = 0; // consecutive infrastructure failures
  bool retry_scheduled = false;
  static inline const char* name = "persister";
};

persister_actor::behavior_type
persister(persister_actor::stateful_pointer<persister_state> self,
          writer_factory make_writer, persister_settings cfg, metrics* stats);

/// batch_writer on storage::journal_writer (connects lazily), fencing each
/// batch by the Kafka cluster id it carries; keep_raw: write payload_raw;
/// partition_interval: setting journal-partition-interval.
writer_factory journal_writer_factory(std::string database_url,
                                      bool keep_raw = true,
                                      std::string partition_interval = "day");

} // namespace ces
