// CAF type IDs for every message element the actors exchange, and the inspect
// overloads of the plain model types (storage/model.hpp stays CAF-free).
// Included only by actor code and actor tests: it pulls in CAF.
#pragma once

#include "api/routes.hpp"
#include "storage/journal_reader.hpp"
#include "storage/model.hpp"

#include <caf/all.hpp>

#include <memory>

#include <cstdint>
#include <string>
#include <vector>

namespace ces {

/// Errors of the service, as CAF errors (exit reasons and request errors).
enum class errc : uint8_t {
  none = 0,
  /// The SUPERVISOR spent its restart budget and gave up.
  restart_budget_exhausted,
  /// librdkafka reported a fatal error.
  kafka_fatal,
  /// No journal row with that id.
  not_found,
  /// PostgreSQL did not answer a read.
  db_unavailable,
  /// The broker is unreachable or its local queue is full: try again.
  broker_unavailable,
  /// The broker refused the message.
  delivery_failed,
  /// The broker did not acknowledge the message within the replay timeout.
  delivery_timeout,
  /// A graceful stop had to kill an actor that outlived its stop timeout.
  shutdown_forced,
  /// A request reached its actor after its deadline: not served.
  expired,
};

/// What the REPLAYER did with one journalled event.
struct replay_result {
  int64_t event_id = 0;
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string replay_id;
};

/// One poll result handed from the CONSUMER to the PERSISTER.
struct batch {
  uint64_t seq = 0;
  /// The Kafka cluster the records come from: the key of the journal's
  /// offset fence (with topic and partition).
  std::string cluster_id;
  std::vector<checked_record> records;
};

/// One supervised child as the SUPERVISOR sees it.
struct child_status {
  std::string name;
  std::string state; // "running", "restarting", "stopped"
  uint32_t restarts = 0;
  std::string last_failure;
};

// -- inspect (CAF 0.17 dialect: f(meta::type_name, fields...)) ---------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kafka_header& x) {
  return f(caf::meta::type_name("ces.kafka_header"), x.key, x.value,
           x.has_value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kafka_record& x) {
  return f(caf::meta::type_name("ces.kafka_record"), x.topic, x.partition,
           x.offset, x.has_key, x.key, x.headers, x.timestamp_ms,
           x.timestamp_type, x.has_value, x.value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checked_record& x) {
  auto reason = static_cast<uint8_t>(x.reason);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.reason = static_cast<reject_reason>(reason);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.checked_record"), x.rec, reason, load,
           x.error, x.tenant_id, x.replay_of);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partition_offset& x) {
  return f(caf::meta::type_name("ces.partition_offset"), x.topic, x.partition,
           x.next_offset);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, topic_count& x) {
  return f(caf::meta::type_name("ces.topic_count"), x.topic, x.reason,
           x.count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, persist_outcome& x) {
  return f(caf::meta::type_name("ces.persist_outcome"), x.offsets,
           x.journalled, x.dead_lettered, x.skipped, x.isolation_rounds);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch& x) {
  return f(caf::meta::type_name("ces.batch"), x.seq, x.cluster_id,
           x.records);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_status& x) {
  return f(caf::meta::type_name("ces.child_status"), x.name, x.state,
           x.restarts, x.last_failure);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replay_result& x) {
  return f(caf::meta::type_name("ces.replay_result"), x.event_id, x.topic,
           x.partition, x.offset, x.replay_id);
}

} // namespace ces

namespace ces::api {

class pending_request;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, parsed_request& x) {
  auto kind = static_cast<uint8_t>(x.kind);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.kind = static_cast<route_kind>(kind);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.api.parsed_request"), kind, load, x.id,
           x.limit, x.head, x.name);
}

} // namespace ces::api

namespace ces::storage {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_event& x) {
  return f(caf::meta::type_name("ces.journal_event"), x.id, x.tenant_id,
           x.topic, x.partition, x.offset, x.has_key, x.key, x.headers,
           x.payload_json, x.kafka_timestamp_ms, x.received_at, x.replay_of);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_entry_row& x) {
  return f(caf::meta::type_name("ces.dlq_entry_row"), x.id, x.topic,
           x.has_partition, x.partition, x.has_offset, x.offset, x.has_key,
           x.key, x.headers, x.has_payload, x.payload, x.payload_size,
           x.payload_truncated, x.kafka_timestamp_ms, x.tenant_id,
           x.error_class, x.error, x.attempts, x.status, x.received_at,
           x.updated_at);
}

} // namespace ces::storage

/// Requests waiting for an answer travel between actors of this process
/// only; they are never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<ces::api::pending_request>)

CAF_ERROR_CODE_ENUM(ces::errc, "ces")

CAF_BEGIN_TYPE_ID_BLOCK(ces, caf::first_custom_type_id)
  CAF_ADD_ATOM(ces, ces::atom, persist, "persist")
  CAF_ADD_ATOM(ces, ces::atom, poll, "poll")
  CAF_ADD_ATOM(ces, ces::atom, keepalive, "keepalive")
  CAF_ADD_ATOM(ces, ces::atom, retry, "retry")
  CAF_ADD_ATOM(ces, ces::atom, refresh, "refresh")
  CAF_ADD_ATOM(ces, ces::atom, respawn, "respawn")
  CAF_ADD_ATOM(ces, ces::atom, status, "status")
  CAF_ADD_ATOM(ces, ces::atom, shutdown, "shutdown")
  CAF_ADD_ATOM(ces, ces::atom, stop_next, "stop_next")
  CAF_ADD_ATOM(ces, ces::atom, force_stop, "force_stop")
  CAF_ADD_ATOM(ces, ces::atom, replay, "replay")
  CAF_ADD_ATOM(ces, ces::atom, latest, "latest")
  CAF_ADD_ATOM(ces, ces::atom, get, "get")
  CAF_ADD_ATOM(ces, ces::atom, ping, "ping")
  CAF_ADD_ATOM(ces, ces::atom, fail, "fail")
  CAF_ADD_TYPE_ID(ces, (ces::batch))
  CAF_ADD_TYPE_ID(ces, (ces::persist_outcome))
  CAF_ADD_TYPE_ID(ces, (ces::child_status))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::child_status>))
  CAF_ADD_TYPE_ID(ces, (ces::replay_result))
  CAF_ADD_TYPE_ID(ces, (ces::api::parsed_request))
  CAF_ADD_TYPE_ID(ces, (std::shared_ptr<ces::api::pending_request>))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::journal_event>))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::dlq_entry_row>))
CAF_END_TYPE_ID_BLOCK(ces)

namespace ces {

/// Exception handler for every actor of the service: an uncaught exception
/// ends the actor with sec::runtime_error carrying the exception's message,
/// so the SUPERVISOR's crash log says what went wrong.
inline caf::error exception_to_error(caf::scheduled_actor*,
                                     std::exception_ptr& eptr) {
  try {
    std::rethrow_exception(eptr);
  } catch (const std::exception& e) {
    return caf::make_error(caf::sec::runtime_error, std::string{e.what()});
  } catch (...) {
    return caf::make_error(caf::sec::runtime_error,
                           std::string{"unknown exception"});
  }
}

} // namespace ces

namespace ces {

/// The context of an error when it is a single string (how this service
/// makes its errors), else nullptr.
inline const std::string* context_text(const caf::message& ctx) {
  if (ctx.size() == 1 && ctx.match_element<std::string>(0))
    return &ctx.get_as<std::string>(0);
  return nullptr;
}

/// The human part of an error: its text context, else CAF's rendering.
inline std::string error_message(const caf::actor_system& sys,
                                 const caf::error& err) {
  if (auto text = context_text(err.context()))
    return *text;
  return sys.render(err);
}

/// Exponential backoff: `initial` doubled for each attempt after the first
/// (1-based), capped at `max`. Restarts and PostgreSQL retries use it.
template <class Duration>
Duration capped_backoff(Duration initial, Duration max, uint32_t attempt) {
  auto result = initial;
  for (uint32_t i = 1; i < attempt && result < max; ++i)
    result *= 2;
  return std::min(result, max);
}

} // namespace ces

namespace ces {

/// "not_found", "kafka_fatal", ...
inline const char* to_string(errc x) noexcept {
  switch (x) {
    case errc::none:
      return "none";
    case errc::restart_budget_exhausted:
      return "restart_budget_exhausted";
    case errc::kafka_fatal:
      return "kafka_fatal";
    case errc::not_found:
      return "not_found";
    case errc::db_unavailable:
      return "db_unavailable";
    case errc::broker_unavailable:
      return "broker_unavailable";
    case errc::delivery_failed:
      return "delivery_failed";
    case errc::delivery_timeout:
      return "delivery_timeout";
    case errc::shutdown_forced:
      return "shutdown_forced";
    case errc::expired:
      return "expired";
  }
  return "unknown";
}

/// Renders errors of category "ces" as `<name>: <context>` for logs; load it
/// with cfg.add_error_category(caf::atom("ces"), render_errc).
inline std::string render_errc(uint8_t code, caf::atom_value,
                               const caf::message& ctx) {
  std::string result = to_string(static_cast<errc>(code));
  if (auto text = context_text(ctx))
    result += ": " + *text;
  else if (!ctx.empty())
    result += ": " + to_string(ctx);
  return result;
}

} // namespace ces
