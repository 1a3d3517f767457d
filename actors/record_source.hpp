// Where the CONSUMER gets its records from. The production implementation is
// kafka_source (librdkafka); actor tests use a scripted fake.
#pragma once

#include "storage/model.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace ces {

/// What a source knows of one assigned partition without asking the broker.
struct partition_position {
  std::string topic;
  int32_t partition = 0;
  /// The broker's high watermark as last seen (fetch responses), -1 unknown.
  int64_t high_watermark = -1;
  /// The offset consumption of the partition started from in this
  /// assignment (the journal's stored offset, else the first record read,
  /// else the log start when nothing was stored nor read), -1 unknown.
  int64_t start = -1;
};

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

  /// The assigned partitions with their cached watermarks; never blocks
  /// (no broker round trip). Sources without watermarks report none.
  virtual std::vector<partition_position> positions() {
    return {};
  }
};

} // namespace ces
