// record_source on a librdkafka KafkaConsumer. No CAF. On every partition
// assignment it starts from the next offsets stored in PostgreSQL (written in
// the same transaction as the journal rows), so the journal, not Kafka's
// committed offsets, decides where consumption resumes.
#pragma once

#include "actors/record_source.hpp"

#include <memory>
#include <string>
#include <vector>

namespace ces {

struct kafka_source_config {
  std::string bootstrap_servers;
  std::string group_id;
  std::vector<std::string> topics;
  /// Extra librdkafka properties, "key=value" each; they override defaults.
  std::vector<std::string> properties;
  int session_timeout_ms = 45000;
  /// Where the stored offsets live.
  std::string database_url;
};

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

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces
