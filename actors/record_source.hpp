// Where the CONSUMER gets its records from. The production implementation is
// kafka_source (librdkafka); actor tests use a scripted fake.
#pragma once

#include "storage/model.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <utility>
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

/// Offsets of one partition that the broker deleted (retention) before
/// they were read: consumption jumped over them (auto.offset.reset).
struct offset_gap {
  std::string topic;
  int32_t partition = 0;
  int64_t first = 0; ///< the first offset lost
  int64_t last = 0;  ///< the last offset lost (inclusive)
  int64_t count() const {
    return last - first + 1;
  }
};

/// Tracks per partition the offset the next record should have (the
/// journal's stored offset at assignment, then the last record read + 1) and
/// finds the records that jumped over offsets the broker no longer holds.
/// An offset jump that stays at or above the partition's log start offset
/// (transaction markers, aborted transactions, compaction) is not data loss
/// and is not reported; only the part of a jump below the log start is.
class gap_tracker {
public:
  /// The next record of (topic, partition) should be at `next`.
  void expect(const std::string& topic, int32_t partition, int64_t next) {
    next_[{topic, partition}] = next;
  }

  /// Nothing is expected of (topic, partition) any more (revoked, or
  /// assigned without a known start).
  void forget(const std::string& topic, int32_t partition) {
    next_.erase({topic, partition});
  }

  void clear() {
    next_.clear();
  }

  /// A record at `offset` was read. `log_start()` returns the partition's
  /// log start offset as last seen (-1 unknown); it is called only when the
  /// record skipped offsets. Returns the offsets lost, if any.
  template <class LogStart>
  std::optional<offset_gap> read(const std::string& topic, int32_t partition,
                                 int64_t offset, LogStart&& log_start) {
    auto [i, added] = next_.emplace(std::make_pair(topic, partition), 0);
    auto expected = i->second;
    i->second = offset + 1;
    if (added || offset <= expected)
      return std::nullopt;
    int64_t low = log_start();
    if (low <= expected)
      return std::nullopt; // still in the log: markers or compaction
    return offset_gap{topic, partition, expected, std::min(offset, low) - 1};
  }

private:
  std::map<std::pair<std::string, int32_t>, int64_t> next_;
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

  /// The offset gaps found since the last call (each reported once): records
  /// the broker deleted before they were read. Sources that cannot lose
  /// records report none.
  virtual std::vector<offset_gap> take_gaps() {
    return {};
  }
};

} // namespace ces
