// Where the CONSUMER gets its records from. The production implementation is
// kafka_source (librdkafka); actor tests use a scripted fake.
#pragma once

#include "storage/model.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace ces {

class record_source {
public:
  virtual ~record_source() = default;

  /// Waits at most `timeout` for the next record. Returns false on timeout.
  /// Throws std::runtime_error on a fatal error.
  virtual bool next(kafka_record& out, std::chrono::milliseconds timeout) = 0;

  /// Stops fetching for all assigned partitions (backpressure), including
  /// partitions assigned later, until resume_all().
  virtual void pause_all() = 0;
  virtual void resume_all() = 0;

  /// Serves group callbacks (rebalances, heartbeats bookkeeping) without
  /// blocking, while paused.
  virtual void serve() = 0;

  /// Records the next offsets after a committed batch (asynchronously).
  virtual void commit(const std::vector<partition_offset>& offsets) = 0;

  /// Leaves the group; `final_offsets` are committed synchronously first.
  virtual void close(const std::vector<partition_offset>& final_offsets) = 0;

  /// The id of the Kafka cluster the records come from (the journal's offset
  /// fence is keyed by it); known once partitions are assigned, so before
  /// the first record.
  virtual std::string cluster_id() const = 0;
};

} // namespace ces
