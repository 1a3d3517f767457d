// ces::embedded_broker: librdkafka 2.0.2's mock cluster (rdkafka_mock.h)
// hosted in this process. No CAF; rdkafka_mock.h stays out of this header.
//
// Used by development runs, tests and tests/tools/crm-mock-broker. It is a
// real Kafka protocol endpoint: any client (librdkafka, kcat, kafka-python)
// can connect to bootstraps().
//
// Behaviour of the installed librdkafka 2.0.2 mock cluster (measured; see
// tests/integration/kafka_tools_test.cpp):
//
// * Threads. The cluster runs on its own thread ("rdk:mock"), one for the
//   whole cluster, which serves every broker, connection and fault-injection
//   command. The hosting rd_kafka_t is only used for bookkeeping (logging,
//   an internal dummy broker): it never needs to be polled, and the cluster
//   keeps serving clients while the hosting handle sits idle for any time.
//   rd_kafka_mock_* control functions are thread-safe (they post an op to the
//   cluster thread and wait for its reply).
// * Listeners. Each broker listens on 127.0.0.1 (IPv4 loopback only) on an
//   ephemeral port chosen by the kernel; ports cannot be chosen. bootstraps()
//   is "127.0.0.1:PORT1,127.0.0.1:PORT2,...", broker ids are 1..N in that
//   order, and each broker advertises 127.0.0.1:PORT in Metadata. The ports
//   stay the same for the cluster's lifetime, also across down/up.
// * Down/up (measured with tests/tools/crm-mock-broker). broker_set_down(id)
//   closes every connection to the broker at once (clients log
//   "Disconnected" and "1/1 brokers are down") and closes its listener: new
//   connects are refused immediately (ECONNREFUSED), they do not hang. It does
//   NOT move partition leadership, so partitions led by a down broker are
//   unavailable. Producers keep messages queued and retry until
//   message.timeout.ms (then _MSG_TIMED_OUT; librdkafka checks timeouts about
//   once a second, so a 3 s timeout fails after ~4 s). broker_set_up(id)
//   listens again on the SAME port. A client that never got connected
//   reconnects within milliseconds; a client whose connection was cut by
//   `down` backs off exponentially up to reconnect.backoff.max.ms (default
//   10 s): after a 15 s outage it resumed 7.3 s after `up` with the default,
//   0.55 s with reconnect.backoff.max.ms=1000 -- tests that use down/up should
//   set reconnect.backoff.max.ms to ~1000 on their clients. Queued messages of
//   an idempotent producer are then delivered exactly once (no duplicates,
//   no gaps). Broker id -1 means all brokers; an unknown id gives
//   RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE.
// * Retention. Each partition keeps at most ~5 MiB or 100 000 message sets;
//   older message sets are dropped silently (the low watermark moves up).
//   Measured: 200 000 CRM events (~520 B) per topic over 16 partitions kept
//   ~9 400 events per partition (low watermark ~3 100, high ~12 500).
//   Check watermarks() after preloading data.
// * Topics. The Kafka CreateTopics admin API is not supported; topics are
//   created here (rd_kafka_mock_topic_create) or auto-created by Metadata
//   requests with 4 partitions.
// * Groups. A new group waits about 3 s for its first assignment; a member
//   that rejoins after the last one left waits session.timeout.ms - 1 s, and
//   a dead member is noticed after session.timeout.ms: restart tests keep
//   session.timeout.ms short.
// * Destruction. rd_kafka_mock_cluster_destroy() closes all listeners and
//   connections and drops all data; destroy clients that use the cluster
//   first, or they log connection errors until they are destroyed.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

// Forward declarations of librdkafka's opaque types (same as in rdkafka.h and
// rdkafka_mock.h, which declare `typedef struct rd_kafka_s rd_kafka_t;` etc.).
typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_mock_cluster_s rd_kafka_mock_cluster_t;

namespace ces {

/// Low and high watermark of one partition, as the cluster reports them.
struct partition_watermarks {
  std::string topic;
  int32_t partition = 0;
  int64_t low = 0;  // first offset still stored
  int64_t high = 0; // offset of the next message to be appended
  /// Non-empty when the topic's metadata or this partition's offsets could
  /// not be read (e.g. an injected topic error); partition is -1 for a topic
  /// error, and low/high are then meaningless.
  std::string error;
};

/// librdkafka's mock Kafka cluster, hosted in this process.
class embedded_broker {
public:
  struct options {
    /// Topics created at start-up, each with `partitions` partitions.
    std::vector<std::string> topics;
    int partitions = 4;
    /// Number of brokers (ids 1..brokers). Replication factor of the topics
    /// is min(brokers, 3).
    int brokers = 1;
    /// librdkafka `debug` contexts for the hosting handle, e.g. "mock" logs
    /// every request the cluster serves. Empty: none.
    std::string debug;
  };

  /// Creates the hosting handle, the cluster and the topics.
  /// Throws std::runtime_error (invalid arguments, handle or cluster creation
  /// failed, topic creation failed).
  embedded_broker(const std::vector<std::string>& topics, int partitions,
                  int brokers = 1);
  explicit embedded_broker(const options& opts);

  /// Destroys the watermark client, the cluster and the hosting handle.
  ~embedded_broker();

  embedded_broker(const embedded_broker&) = delete;
  embedded_broker& operator=(const embedded_broker&) = delete;

  /// "127.0.0.1:port,..." for bootstrap.servers.
  std::string bootstraps() const;

  /// The cluster, for fault injection with rdkafka_mock.h
  /// (rd_kafka_mock_broker_set_down/up/rtt, rd_kafka_mock_push_request_errors,
  /// rd_kafka_mock_topic_set_error, ...).
  rd_kafka_mock_cluster_t* cluster() const noexcept {
    return cluster_;
  }

  int broker_count() const noexcept {
    return brokers_;
  }

  /// Creates one more topic. Throws std::runtime_error (e.g. it exists).
  void create_topic(const std::string& topic, int partitions);

  /// Low/high watermarks of every partition of every topic the cluster knows
  /// (created or auto-created), sorted by topic and partition. Asks the
  /// cluster through an ordinary librdkafka client (Metadata + ListOffsets),
  /// created on first use. Topics or partitions that report an error get an
  /// entry with `error` set. Throws std::runtime_error if the cluster does not
  /// answer the Metadata request within `timeout` (e.g. its broker is down).
  std::vector<partition_watermarks>
  watermarks(std::chrono::milliseconds timeout
             = std::chrono::milliseconds{5000}) const;

private:
  void init(const options& opts);
  void destroy() noexcept;

  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  int brokers_ = 0;
  std::string bootstraps_;
  mutable std::mutex query_mtx_;
  mutable rd_kafka_t* query_ = nullptr; // lazily created watermark client
};

} // namespace ces
