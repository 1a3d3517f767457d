// record_source on a librdkafka KafkaConsumer. No CAF. On every partition
// assignment it starts from the next offsets stored in PostgreSQL (written in
// the same transaction as the journal rows), so the journal, not Kafka's
// committed offsets, decides where consumption resumes.
#pragma once

#include "actors/record_source.hpp"

#include <chrono>
#include <memory>
#include <string>
#include <vector>

namespace ces {

struct kafka_source_config {
  std::string bootstrap_servers;
  std::string group_id;
  /// Topic names, or patterns (starting with '^': a POSIX extended regular
  /// expression librdkafka matches against the cluster's topics).
  std::vector<std::string> topics;
  /// Extra librdkafka properties, "key=value" each; they override defaults.
  std::vector<std::string> properties;
  int session_timeout_ms = 45000;
  /// Where the stored offsets live (the journal's, keyed by the Kafka
  /// cluster id: on assignment each partition starts from the journal's
  /// offset on this cluster, whichever group wrote it).
  std::string database_url;
};

/// Sets `cfg.bootstrap_servers` and `cfg.properties` on a librdkafka
/// configuration, without connecting. Throws std::runtime_error naming the
/// offending property (never its value if it may be a secret).
void check_kafka_properties(const kafka_source_config& cfg);

/// Asks the cluster at `cfg.bootstrap_servers` (with `cfg.properties`) for its
/// cluster id, waiting up to `timeout`. Returns "" when the cluster did not
/// answer in time (or reports none). Throws like check_kafka_properties().
std::string kafka_cluster_id(const kafka_source_config& cfg,
                             std::chrono::milliseconds timeout);

class kafka_source : public record_source {
public:
  /// Creates the consumer and subscribes. Throws std::runtime_error naming
  /// the offending property on configuration errors.
  explicit kafka_source(const kafka_source_config& cfg);
  ~kafka_source() override;

  bool next(kafka_record& out, std::chrono::milliseconds timeout) override;
  void pause_all() override;
  void resume_all() override;
  void serve() override;
  void commit(const std::vector<partition_offset>& offsets) override;
  void close(const std::vector<partition_offset>& final_offsets) override;
  std::string cluster_id() const override;
  std::vector<partition_position> positions() override;
  std::vector<offset_gap> take_gaps() override;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces
