#include "actors/errc.hpp"

#include <caf/actor_system.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace ces {

const char* to_string(errc x) noexcept {
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
    case errc::rate_limited:
      return "rate_limited";
    case errc::forbidden:
      return "forbidden";
    case errc::unauthenticated:
      return "unauthenticated";
    case errc::bad_request:
      return "bad_request";
    case errc::conflict:
      return "conflict";
    case errc::gone:
      return "gone";
    case errc::unprocessable:
      return "unprocessable";
  }
  return "unknown";
}

std::string render_errc(uint8_t code, caf::atom_value,
                        const caf::message& ctx) {
  std::string result = to_string(static_cast<errc>(code));
  if (auto text = context_text(ctx))
    result += ": " + *text;
  else if (!ctx.empty())
    result += ": " + to_string(ctx);
  return result;
}

const std::string* context_text(const caf::message& ctx) {
  // The text comes first; rate_limited adds the seconds to wait.
  if (ctx.size() >= 1 && ctx.match_element<std::string>(0))
    return &ctx.get_as<std::string>(0);
  return nullptr;
}

caf::error event_gone(int64_t id) {
  return caf::make_error(errc::gone,
                         "journal event " + std::to_string(id)
                           + " is gone: its partition was dropped by"
                             " retention (journal-retention-days)");
}

const std::string* context_code(const caf::message& ctx) {
  if (ctx.size() >= 2 && ctx.match_element<std::string>(1))
    return &ctx.get_as<std::string>(1);
  return nullptr;
}

std::string error_message(const caf::actor_system& sys,
                          const caf::error& err) {
  if (auto text = context_text(err.context()))
    return *text;
  return sys.render(err);
}

int64_t retry_after_s(const caf::message& ctx) {
  if (ctx.size() >= 2 && ctx.match_element<int64_t>(1))
    return ctx.get_as<int64_t>(1);
  return 0;
}

caf::error exception_to_error(caf::scheduled_actor*,
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
