// The service's error codes as CAF errors (category "ces", as vast's
// error.hpp), their rendering for logs, and the exception handler every
// actor installs.
#pragma once

#include <caf/error.hpp>
#include <caf/fwd.hpp>
#include <caf/make_message.hpp>

#include <cstdint>
#include <exception>
#include <string>

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
  /// Over a rate limit (context: the message, then the seconds to wait as
  /// int64_t).
  rate_limited,
  /// The principal may not do this (role or tenant scope).
  forbidden,
  /// The credentials are missing, unknown, expired, revoked or invalid.
  unauthenticated,
  /// A request or its parameters are invalid (400).
  bad_request,
  /// The resource exists already (409), e.g. a key name in use.
  conflict,
  /// The resource existed but is gone for good (404, code "gone"), e.g. an
  /// event whose partition was dropped by retention.
  gone,
  /// The request is well-formed but cannot be done (422), e.g. a DLQ row
  /// whose bytes are still invalid.
  unprocessable,
};

/// "not_found", "kafka_fatal", ...
const char* to_string(errc x) noexcept;

/// Renders errors of category "ces" as `<name>: <context>` for logs; load it
/// with cfg.add_error_category(caf::atom("ces"), render_errc).
std::string render_errc(uint8_t code, caf::atom_value,
                        const caf::message& ctx);

/// The context of an error when it starts with a string (how this service
/// makes its errors), else nullptr.
const std::string* context_text(const caf::message& ctx);

/// rate_limited: the seconds to wait (the context's second element), else 0.
int64_t retry_after_s(const caf::message& ctx);

/// The stable API code of a bad_request, conflict, gone or unprocessable
/// error when its context carries one (the context's second element, a
/// string: make_error(errc::bad_request, message, std::string{"bad_time"})),
/// else nullptr.
const std::string* context_code(const caf::message& ctx);

/// errc::gone for journal event `id`, whose partition retention dropped.
caf::error event_gone(int64_t id);

/// The human part of an error: its text context, else CAF's rendering.
std::string error_message(const caf::actor_system& sys, const caf::error& err);

/// Exception handler for every actor of the service: an uncaught exception
/// ends the actor with sec::runtime_error carrying the exception's message,
/// so the SUPERVISOR's crash log says what went wrong.
caf::error exception_to_error(caf::scheduled_actor*, std::exception_ptr& eptr);

} // namespace ces

CAF_ERROR_CODE_ENUM(ces::errc, "ces")
