// ces::replay_producer: the idempotent librdkafka producer the REPLAYER owns to
// republish journalled events. No CAF; librdkafka stays out of this header.
//
// Usage (from one thread, e.g. a detached actor):
//   replay_producer p{cfg, [](const delivery_report& r) { ... }};
//   auto st = p.produce(topic, has_key, key,
//                       replay_headers(headers, journal_id, make_replay_id()),
//                       payload, token, partition);
//   if (!st.ok) ... answer now
//   p.poll(100); // delivery reports arrive here, on the calling thread
//
// Every produced message gets exactly one delivery report through poll() or
// flush() (success, broker error, or _MSG_TIMED_OUT after
// message.timeout.ms), unless the producer is destroyed first. The producer is
// idempotent (enable.idempotence=true, hence acks=all and retries without
// duplicates or reordering within a partition).
#pragma once

#include "storage/model.hpp"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ces {

/// Provenance headers of a replayed message.
inline constexpr std::string_view replay_of_header = "x-replay-of";
inline constexpr std::string_view replay_id_header = "x-replay-id";
/// The bulk replay job that published it (decimal job id).
inline constexpr std::string_view replay_job_header = "x-replay-job";
/// The original record's Kafka timestamp (decimal milliseconds since the
/// epoch; absent when it had none).
inline constexpr std::string_view original_timestamp_header =
  "x-original-timestamp";

/// `original` without any provenance header (x-replay-of, x-replay-id,
/// x-replay-job, x-original-timestamp; exact, case-sensitive key match, as
/// validate.cpp reads them), followed by `x-replay-of: <replay_of>`
/// (decimal), `x-replay-id: <replay_id>`, then `x-replay-job: <job_id>` when
/// job_id > 0 and `x-original-timestamp: <ms>` when original_timestamp_ms
/// >= 0. Other headers keep their order, values and null-ness.
std::vector<kafka_header> replay_headers(const std::vector<kafka_header>& original,
                                         int64_t replay_of,
                                         std::string_view replay_id,
                                         int64_t job_id = 0,
                                         int64_t original_timestamp_ms = -1);

/// The headers a republished dead letter carries: `original` without any
/// `x-dlq-id`, then `x-dlq-id: <dlq_id>` (decimal). Other headers keep their
/// order, values and null-ness.
std::vector<kafka_header>
dlq_republish_headers(const std::vector<kafka_header>& original,
                      int64_t dlq_id);

/// The replay id of event `event_id` in bulk replay job `job_id`:
/// "j<job>-e<event>". The same for every attempt, so that a resend after a
/// crash is recognised at ingest.
std::string job_replay_id(int64_t job_id, int64_t event_id);

/// A random (version 4, RFC 4122) UUID in its canonical lowercase form,
/// e.g. "0b9e5b8e-3c2f-4a53-9a0e-0d7c1f5e2a11". Thread-safe.
std::string make_replay_id();

struct replay_producer_config {
  std::string bootstrap_servers;
  /// Extra librdkafka properties, "key=value" each (SASL, TLS,
  /// reconnect.backoff.max.ms, partitioner, ...). Applied after the defaults,
  /// but enable.idempotence and acks cannot be overridden.
  std::vector<std::string> properties;
  /// A message not acknowledged by the broker within this time fails with
  /// _MSG_TIMED_OUT (librdkafka checks about once a second).
  int message_timeout_ms = 10000;
  std::string client_id = "crm-events-sink-replayer";
};

/// The outcome of one produced message.
struct delivery_report {
  uint64_t token = 0; // as given to produce()
  bool ok = false;
  int32_t partition = -1; // where it went (when ok)
  int64_t offset = -1;    // its offset (when ok)
  std::string error;      // librdkafka's message when !ok
  std::string error_name; // e.g. "_MSG_TIMED_OUT", "UNKNOWN_TOPIC_OR_PART"
};

/// The immediate result of produce().
struct produce_status {
  bool ok = false;
  /// The local queue is full: try again later (answer 503).
  bool queue_full = false;
  std::string error;      // librdkafka's message when !ok
  std::string error_name; // e.g. "_QUEUE_FULL", "_UNKNOWN_TOPIC"
};

class replay_producer {
public:
  using delivery_callback = std::function<void(const delivery_report&)>;

  /// Creates the producer (it connects in the background). Throws
  /// std::invalid_argument for a bad property ("key=value" missing '=', or
  /// refused by librdkafka), std::runtime_error if librdkafka cannot create
  /// the handle. `on_delivery` is called from poll()/flush() only.
  replay_producer(const replay_producer_config& cfg,
                  delivery_callback on_delivery);

  /// Purges queued and in-flight messages and destroys the handle without
  /// calling the delivery callback (the owner is going away; its pending
  /// requests must be answered by the owner).
  ~replay_producer();

  replay_producer(const replay_producer&) = delete;
  replay_producer& operator=(const replay_producer&) = delete;

  /// Queues one message; never blocks. `partition` -1: librdkafka's
  /// partitioner on the key; else that partition (pass the journalled one to
  /// keep the original key -> partition mapping whatever partitioner the
  /// original producer used). `has_key` false: a null key. On !ok no
  /// delivery report follows.
  produce_status produce(const std::string& topic, bool has_key,
                         const std::string& key,
                         const std::vector<kafka_header>& headers,
                         const std::string& payload, uint64_t token,
                         int32_t partition = -1);

  /// Serves delivery reports (and librdkafka events), waiting up to
  /// `timeout_ms` for the first. Returns the number of events served.
  int poll(int timeout_ms);

  /// Waits up to `timeout_ms` for every queued message to be delivered or to
  /// fail, serving their reports. True when none is left.
  bool flush(int timeout_ms);

  /// Messages produced whose delivery report has not been served yet.
  int64_t in_flight() const noexcept;

  /// librdkafka's fatal error (an idempotent producer can hit one, e.g. on an
  /// unrecoverable sequence gap), "" when none. After a fatal error the
  /// producer is unusable: destroy it and create a new one.
  std::string fatal_error() const;

  /// Asks a broker for cluster metadata, waiting up to `timeout_ms`: true
  /// when one answered; otherwise false with librdkafka's reason in `why`,
  /// followed by " (last error: <last_error()>)" when there is one (poll()
  /// first to have it current). Blocks the calling thread.
  bool reachable(int timeout_ms, std::string& why);

  /// The last error librdkafka reported as an event (e.g. "1/1 brokers are
  /// down"), "" when none since the last successful delivery; a secret
  /// property's value in it would be "***" (scrub_properties).
  std::string last_error() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces
