// End-to-end harness: the real crm-events-sink binary against a throwaway
// PostgreSQL (one cluster per test binary, a fresh database per test) and
// crm-mock-broker (librdkafka's mock cluster in a process of its own, so its
// data survives a kill -9 of the sink), driven by crm-produce, a real
// librdkafka producer. With CES_TEST_KAFKA=real the broker is Apache Kafka
// instead (one node, started by scripts/kafka.sh in the world's directory).
#pragma once

#include "tests/support/pg_fixture.hpp"
#include "tests/support/process.hpp"

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

namespace ces::e2e {

using namespace std::chrono_literals;
using ces::test::child_process;

/// true: CES_TEST_KAFKA=real, the worlds run Apache Kafka; false (unset or
/// `mock`): crm-mock-broker. Tests that need the mock's fault control
/// (world_options::broker_control) return early with a WARN on the real one.
bool real_kafka();

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

/// Optional features of a world (the defaults are what the e2e tests use).
struct world_options {
  /// true: the world gets a PostgreSQL cluster of its own (cluster()), which
  /// a test may stop()/start() without disturbing other tests; false: a fresh
  /// database in the shared pg().
  bool own_cluster = false;
  /// true: the broker reads control commands from its stdin
  /// (broker_command()). Mock broker only: a world asking for it on the real
  /// broker throws.
  bool broker_control = false;
  /// Extra broker settings (`key=value`, kafka.sh --config) for the real
  /// broker, e.g. log.retention.ms=10000; ignored by the mock.
  std::vector<std::string> kafka_config;
  /// Extra arguments of `scripts/kafka.sh start` (real broker only; the mock
  /// ignores them), e.g. {"--sasl", "@users-file"}.
  std::vector<std::string> kafka_args;
  /// Nodes of the real broker (1 or 3; kafka.sh --nodes): 3 gives every
  /// topic 3 replicas and min.insync.replicas 2. Real broker only: the mock
  /// ignores it.
  int nodes = 1;
};

class world {
public:
  /// Starts a broker (see real_kafka()) with `topics` of `partitions` each
  /// and creates a fresh database.
  world(std::vector<std::string> topics, int partitions,
        world_options options = {});
  ~world();

  /// The cluster holding db_url(): the world's own or the shared pg().
  ces::test::pg_fixture& cluster() const {
    return *cluster_;
  }

  /// Sends one control command to the broker (needs broker_control) and
  /// returns its answer line (`ok ...` or `error ...`); lines the broker
  /// prints before the answer (e.g. `watermark ...`) go to `before` if given.
  /// Throws if the broker does not answer within `timeout`.
  std::string broker_command(const std::string& line,
                             std::vector<std::string>* before = nullptr,
                             std::chrono::milliseconds timeout = 10s);

  /// High watermark of every partition of the world's topics: from the
  /// mock's control channel with broker_control, else asked with librdkafka.
  std::map<std::pair<std::string, int32_t>, int64_t> high_watermarks();

  /// Sum of the high watermarks of all partitions: how many records the
  /// broker has been given so far.
  long long broker_messages();

  const std::string& bootstrap() const {
    return bootstrap_;
  }
  /// The real broker's SASL_PLAINTEXT listeners (kafka.sh --sasl:
  /// DIR/bootstrap-sasl); "" without them.
  const std::string& sasl_bootstrap() const {
    return sasl_bootstrap_;
  }

  /// The real broker's kafka.sh DIR (DIR/node-N/{pid,server.log,...});
  /// empty on the mock.
  const std::string& kafka_dir() const {
    return kafka_dir_;
  }
  /// Pid of real broker node `node` (1-based), -1 if it does not run.
  int node_pid(int node) const;
  /// Sends SIGTERM or SIGKILL (`signal` "TERM" or "KILL") to real broker
  /// node `node` and waits until its process is gone (kafka.sh kill).
  void kill_node(int node, const std::string& signal);
  /// Starts node `node` again on its ports and data and waits until it
  /// answers (kafka.sh start-node; up to several minutes on a loaded
  /// machine).
  void start_node(int node);
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

  /// Several sink instances side by side (same group): instance 0 is the one
  /// of sink_args()/start_sink(); instance n > 0 has metrics and HTTP ports
  /// of its own and logs to sink-<n>.log (see sink_log()).
  std::vector<std::string> instance_args(int instance,
                                         std::vector<std::string> extra
                                         = {});
  /// Starts instance `instance`; with `wait_assigned`, waits (30 s) for its
  /// partitions_assigned line like start_sink().
  child_process start_instance(int instance,
                               std::vector<std::string> extra = {},
                               bool wait_assigned = true);
  uint16_t metrics_port(int instance);
  uint16_t http_port(int instance = 0);
  /// The log (stderr) of an instance; restarts append to it.
  std::string sink_log(int instance = 0) const;

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

  /// The admin key every sink of this world registers (ADMIN_TOKEN_FILE);
  /// ces::test::http_request sends it by default.
  const std::string& admin_key() const {
    return admin_key_;
  }

  std::vector<std::string> topics;
  std::string group = "e2e";

private:
  std::unique_ptr<ces::test::pg_fixture> own_cluster_;
  ces::test::pg_fixture* cluster_ = nullptr;
  std::map<int, std::pair<uint16_t, uint16_t>> instance_ports_;
  std::optional<child_process> broker_; // the mock broker
  bool broker_control_ = false;
  std::string kafka_dir_;                // the real broker's (kafka.sh) DIR
  int partitions_;
  std::string bootstrap_;
  std::string sasl_bootstrap_;
  std::string db_url_;
  std::string dir_;
  uint16_t metrics_port_;
  uint16_t http_port_;
  std::string admin_key_;
};

/// Value of one Prometheus sample line (`name{labels}`), -1 if absent.
double metric(const std::string& exposition, const std::string& series);

} // namespace ces::e2e
