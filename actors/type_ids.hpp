// CAF type IDs for every message element the actors exchange, and the inspect
// overloads of the plain model types (storage/model.hpp stays CAF-free).
// Included only by actor code and actor tests: it pulls in CAF.
#pragma once

#include "storage/model.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace ces {

/// Errors of the service, as CAF errors (exit reasons and request errors).
enum class errc : uint8_t {
  none = 0,
  /// The SUPERVISOR spent its restart budget and gave up.
  restart_budget_exhausted,
  /// A child could not start (bad configuration, unreachable dependency).
  start_failed,
  /// librdkafka reported a fatal error.
  kafka_fatal,
};

/// One poll result handed from the CONSUMER to the PERSISTER.
struct batch {
  uint64_t seq = 0;
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
  return f(caf::meta::type_name("ces.batch"), x.seq, x.records);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_status& x) {
  return f(caf::meta::type_name("ces.child_status"), x.name, x.state,
           x.restarts, x.last_failure);
}

} // namespace ces

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
  CAF_ADD_TYPE_ID(ces, (ces::batch))
  CAF_ADD_TYPE_ID(ces, (ces::persist_outcome))
  CAF_ADD_TYPE_ID(ces, (ces::child_status))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::child_status>))
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
