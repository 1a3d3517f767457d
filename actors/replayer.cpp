#include "actors/replayer.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>

namespace ces {

replay_budget::replay_budget(double rate, double burst)
  : rate_(rate), burst_(burst), buckets_(rate, burst) {
}

replay_budget::clock::duration
replay_budget::take(const std::string& tenant, double n,
                    clock::time_point now) {
  clock::duration wait{0};
  if (buckets_.take(tenant, n, now, &wait))
    return clock::duration{0};
  return wait > clock::duration{0} ? wait : clock::duration::max();
}

namespace {

using self_ptr = replayer_actor::stateful_pointer<replayer_state>;

std::string to_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// "50" for 50.0, "0.5" for 0.5.
std::string number_text(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", x);
  return buf;
}

/// The "replay" audit row of event `id` for `who`.
audit_entry replay_audit(const requester& who, int64_t id,
                         std::string outcome, int status) {
  audit_entry a;
  a.who = who;
  a.action = "replay";
  a.target = "event/" + std::to_string(id);
  a.outcome = std::move(outcome);
  a.status = status;
  return a;
}

/// Appends an audit row outside of any action's transaction (refusals and
/// outcomes). A failure is logged: the answer does not wait for the audit.
void audit(self_ptr self, const audit_entry& a) {
  try {
    self->state.reader->append_audit(a);
  } catch (const storage::infra_error& e) {
    log::event(spdlog::level::err, "replayer", "audit_failed",
               {{"action", a.action},
                {"target", a.target},
                {"outcome", a.outcome},
                {"request_id", a.who.request_id},
                {"principal", a.who.principal},
                {"reason", e.what()}});
  }
}

/// The audit row of a replay that failed: `status` is what the HTTP_BRIDGE
/// answers for the error (502 broker_rejected, 503 otherwise).
void audit_failure(self_ptr self, const requester& who, int64_t event_id,
                   const std::string& replay_id, const std::string& topic,
                   int status, const std::string& error) {
  auto a = replay_audit(who, event_id, "failed", status);
  nlohmann::json params{{"topic", topic}, {"error", error}};
  if (!replay_id.empty())
    params["replay_id"] = replay_id;
  a.parameters = to_json(params);
  audit(self, a);
}

void count(self_ptr self, const std::string& topic, const char* outcome) {
  if (auto m = self->state.stats)
    m->add_replay(topic.empty() ? "unknown" : topic, outcome);
}

/// Answers one replay from its delivery report.
void on_delivery(self_ptr self, const delivery_report& r) {
  auto& st = self->state;
  auto i = st.in_flight.find(r.token);
  if (i == st.in_flight.end())
    return;
  auto p = std::move(i->second);
  st.in_flight.erase(i);
  if (r.ok) {
    count(self, p.topic, "replayed");
    log::event(spdlog::level::info, "replayer", "replayed",
               {{"event_id", p.event_id},
                {"topic", p.topic},
                {"partition", r.partition},
                {"offset", r.offset},
                {"replay_id", p.replay_id},
                {"request_id", p.who.request_id},
                {"principal", p.who.principal}});
    auto a = replay_audit(p.who, p.event_id, "ok", 200);
    a.parameters = to_json({{"replay_id", p.replay_id},
                            {"topic", p.topic},
                            {"partition", r.partition},
                            {"offset", r.offset}});
    a.counts = R"({"events":1})";
    audit(self, a);
    p.promise.deliver(
      replay_result{p.event_id, p.topic, r.partition, r.offset, p.replay_id});
    return;
  }
  auto timed_out = r.error_name == "_MSG_TIMED_OUT";
  count(self, p.topic, timed_out ? "timeout" : "failed");
  log::event(spdlog::level::warn, "replayer", "replay_failed",
             {{"event_id", p.event_id},
              {"topic", p.topic},
              {"replay_id", p.replay_id},
              {"request_id", p.who.request_id},
              {"principal", p.who.principal},
              {"reason", r.error_name + ": " + r.error}});
  // broker_timeout (503) or broker_rejected (502).
  audit_failure(self, p.who, p.event_id, p.replay_id, p.topic,
                timed_out ? 503 : 502, r.error_name + ": " + r.error);
  p.promise.deliver(caf::make_error(
    timed_out ? errc::delivery_timeout : errc::delivery_failed,
    r.error_name + ": " + r.error));
}

/// A fatal producer error: answer every pending replay, then crash so the
/// SUPERVISOR starts a fresh producer.
void check_fatal(self_ptr self) {
  auto& st = self->state;
  auto fatal = st.producer->fatal_error();
  if (fatal.empty())
    return;
  for (auto& [token, p] : st.in_flight) {
    count(self, p.topic, "failed");
    audit_failure(self, p.who, p.event_id, p.replay_id, p.topic, 503,
                  "replay producer failed: " + fatal);
    p.promise.deliver(caf::make_error(errc::broker_unavailable,
                                      "replay producer failed: " + fatal));
  }
  st.in_flight.clear();
  self->quit(caf::make_error(errc::kafka_fatal, fatal));
}

void schedule_poll(self_ptr self, std::chrono::milliseconds interval) {
  auto& st = self->state;
  if (st.polling || st.in_flight.empty())
    return;
  st.polling = true;
  self->delayed_send(self, interval, atom::internal_v, atom::poll_v);
}

} // namespace

replayer_actor::behavior_type
replayer(replayer_actor::stateful_pointer<replayer_state> self,
         replayer_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.stats = stats;
  st.reader = std::make_unique<storage::journal_reader>(cfg.database_url);
  st.budget = std::make_unique<replay_budget>(cfg.replay_rate_per_tenant,
                                              cfg.replay_burst_per_tenant);
  // Throws on a bad property: a failed start, restarted with backoff.
  st.producer = std::make_unique<replay_producer>(
    cfg.producer, [self](const delivery_report& r) { on_delivery(self, r); });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (msg.reason == caf::exit_reason::user_shutdown
        && !st.in_flight.empty()) {
      // Graceful stop: give replays in flight their delivery reports.
      st.producer->flush(static_cast<int>(cfg.flush_timeout.count()));
      for (auto& [token, p] : st.in_flight) {
        audit_failure(self, p.who, p.event_id, p.replay_id, p.topic, 503,
                      "shutting down");
        p.promise.deliver(caf::make_error(errc::broker_unavailable,
                                          "shutting down"));
      }
      st.in_flight.clear();
    }
    self->quit(msg.reason);
  });
  return {
    [=](atom::replay, int64_t id,
        const requester& by) -> caf::result<replay_result> {
      auto& st = self->state;
      auto who = by;
      if (who.principal.empty())
        who.principal = "anonymous";
      std::optional<storage::journal_event> ev;
      bool dropped = false;
      try {
        ev = st.reader->event_by_id(id);
        if (!ev)
          dropped = st.reader->event_dropped(id);
      } catch (const storage::infra_error& e) {
        count(self, "", "db_unavailable");
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
      // Retention dropped its partition: `gone` (that an id range was
      // dropped reveals no tenant's event).
      if (dropped) {
        count(self, "", "gone");
        return event_gone(id);
      }
      // An event the requester's scope does not see is answered exactly
      // like a missing one: never reveal that it exists.
      if (!ev || !who.scope.sees(ev->tenant_id)) {
        count(self, "", "not_found");
        return caf::make_error(errc::not_found,
                               "no journal event " + std::to_string(id));
      }
      // The event's tenant pays, whoever asks.
      auto wait = st.budget->take(ev->tenant_id, 1);
      if (wait > replay_budget::clock::duration{0}) {
        int64_t retry_after = 1;
        if (wait != replay_budget::clock::duration::max())
          retry_after = std::max<int64_t>(
            1, std::chrono::ceil<std::chrono::seconds>(wait).count());
        count(self, ev->topic, "throttled");
        if (auto m = st.stats)
          m->add_replay_throttled(ev->tenant_id);
        log::event(spdlog::level::warn, "replayer", "replay_throttled",
                   {{"event_id", id},
                    {"tenant", ev->tenant_id},
                    {"retry_after_s", retry_after},
                    {"request_id", who.request_id},
                    {"principal", who.principal}});
        auto a = replay_audit(who, id, "refused", 429);
        a.parameters = to_json({{"tenant", ev->tenant_id},
                                {"retry_after_s", retry_after}});
        audit(self, a);
        return caf::make_error(
          errc::rate_limited,
          "replay budget of tenant " + ev->tenant_id + " exhausted ("
            + number_text(st.budget->rate()) + " events/s, burst "
            + number_text(st.budget->burst()) + ")",
          int64_t{retry_after});
      }
      // Fail fast while the broker is known to be away: librdkafka reported
      // an error since the last delivery, and a metadata request confirms
      // it. (Otherwise the answer would wait for the message timeout.)
      st.producer->poll(0); // serve pending events: last_error is current
      if (!st.producer->last_error().empty()) {
        std::string why;
        if (!st.producer->reachable(cfg.ping_timeout_ms, why)) {
          count(self, ev->topic, "failed");
          audit_failure(self, who, id, "", ev->topic, 503,
                        "broker unreachable: " + why);
          return caf::make_error(errc::broker_unavailable,
                                 "broker unreachable: " + why);
        }
      }
      // Record the replay before publishing it: the journal honours its
      // provenance headers only for a recorded replay.
      auto replay_id = make_replay_id();
      try {
        storage::replay_record rec;
        rec.replay_id = replay_id;
        rec.event_id = ev->id;
        rec.tenant_id = ev->tenant_id;
        rec.topic = ev->topic;
        rec.principal = who.principal;
        rec.request_id = who.request_id;
        auto a = replay_audit(who, id, "accepted", 0);
        a.parameters = to_json({{"replay_id", replay_id},
                                {"topic", ev->topic}});
        st.reader->record_replay(rec, a);
      } catch (const storage::infra_error& e) {
        count(self, ev->topic, "db_unavailable");
        log::event(spdlog::level::warn, "replayer", "replay_not_recorded",
                   {{"event_id", id},
                    {"request_id", who.request_id},
                    {"principal", who.principal},
                    {"reason", e.what()}});
        return caf::make_error(errc::db_unavailable,
                               "replay not recorded: "
                                 + std::string{e.what()});
      }
      auto token = st.next_token++;
      // The bytes as received (payload_raw); jsonb's rendering only for rows
      // journalled without them. The original timestamp travels as a header.
      auto sent = st.producer->produce(
        ev->topic, ev->has_key, ev->key,
        replay_headers(ev->headers, ev->id, replay_id, 0,
                       ev->kafka_timestamp_ms),
        ev->has_raw ? ev->payload_raw : ev->payload_json, token,
        ev->partition);
      if (!sent.ok) {
        count(self, ev->topic, "failed");
        audit_failure(self, who, id, replay_id, ev->topic, 503,
                      sent.error_name + ": " + sent.error);
        return caf::make_error(errc::broker_unavailable,
                               sent.error_name + ": " + sent.error);
      }
      auto rp = self->make_response_promise<replay_result>();
      st.in_flight.emplace(token,
                           replayer_state::pending{rp, ev->id, ev->topic,
                                                   replay_id, std::move(who)});
      schedule_poll(self, cfg.poll_interval);
      return rp;
    },
    [=](atom::ping) -> caf::result<bool> {
      self->state.producer->poll(0); // serve pending events: last_error
      std::string why;
      if (self->state.producer->reachable(cfg.ping_timeout_ms, why))
        return true;
      return caf::make_error(errc::broker_unavailable, why);
    },
    [=](atom::internal, atom::poll) {
      auto& st = self->state;
      st.polling = false;
      st.producer->poll(0);
      check_fatal(self);
      schedule_poll(self, cfg.poll_interval);
    },
  };
}

} // namespace ces
