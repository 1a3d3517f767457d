// End-to-end harness: the real crm-events-sink binary against a throwaway
// PostgreSQL (one cluster per test binary, a fresh database per test) and
// crm-mock-broker (librdkafka's mock cluster in a process of its own, so its
// data survives a kill -9 of the sink), driven by crm-produce, a real
// librdkafka producer.
#pragma once

#include "tests/support/pg_fixture.hpp"
#include "tests/support/process.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace ces::e2e {

using namespace std::chrono_literals;
using ces::test::child_process;

/// The cluster shared by every test of this binary.
ces::test::pg_fixture& pg();

/// (topic, partition, offset)
using coords = std::tuple<std::string, int32_t, int64_t>;

struct manifest_entry {
  coords at;
  std::string kind; // ok, invalid_json, missing_tenant, empty_value, ...
};

std::vector<manifest_entry> read_manifest(const std::string& path);

/// Polls `pred` every 100 ms until it holds or `timeout` passes.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout);

class world {
public:
  /// Starts a mock broker with `topics` of `partitions` each and creates a
  /// fresh database.
  world(std::vector<std::string> topics, int partitions);
  ~world();

  const std::string& bootstrap() const {
    return bootstrap_;
  }
  const std::string& db_url() const {
    return db_url_;
  }
  uint16_t metrics_port() const {
    return metrics_port_;
  }

  /// Command line of the sink: every setting given explicitly.
  std::vector<std::string> sink_args(std::vector<std::string> extra = {}) const;

  /// Starts the sink and waits until it has joined the group (partitions
  /// assigned), up to 30 s.
  child_process start_sink(std::vector<std::string> extra = {});

  /// Runs crm-produce to completion with a manifest; returns the manifest.
  std::vector<manifest_entry> produce(std::vector<std::string> args);

  /// Starts crm-produce in the background; `manifest` receives its path.
  child_process start_producer(std::vector<std::string> args,
                               std::string& manifest);

  long long count(const std::string& sql) const;
  std::string value(const std::string& sql) const;
  std::vector<std::vector<std::string>> rows(const std::string& sql) const;

  /// Every (topic, partition, offset) of event_journal (or event_dlq), with
  /// how often it occurs.
  std::map<coords, int> journal_coords() const;
  std::map<coords, int> dlq_coords() const;

  std::string temp_path(const std::string& name) const;

  std::vector<std::string> topics;
  std::string group = "e2e";

private:
  child_process broker_;
  std::string bootstrap_;
  std::string db_url_;
  std::string dir_;
  uint16_t metrics_port_;
  uint16_t http_port_;
};

/// Value of one Prometheus sample line (`name{labels}`), -1 if absent.
double metric(const std::string& exposition, const std::string& series);

} // namespace ces::e2e
