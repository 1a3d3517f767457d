#include "actors/replayer.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"

namespace ces {

namespace {

using self_ptr = replayer_actor::stateful_pointer<replayer_state>;

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
                {"replay_id", p.replay_id}});
    p.promise.deliver(
      replay_result{p.event_id, p.topic, r.partition, r.offset, p.replay_id});
    return;
  }
  auto timed_out = r.error_name == "_MSG_TIMED_OUT";
  count(self, p.topic, timed_out ? "timeout" : "failed");
  log::event(spdlog::level::warn, "replayer", "replay_failed",
             {{"event_id", p.event_id},
              {"topic", p.topic},
              {"reason", r.error_name + ": " + r.error}});
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
  // Throws on a bad property: a failed start, restarted with backoff.
  st.producer = std::make_unique<replay_producer>(
    cfg.producer, [self](const delivery_report& r) { on_delivery(self, r); });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (msg.reason == caf::exit_reason::user_shutdown
        && !st.in_flight.empty()) {
      // Graceful stop: give replays in flight their delivery reports.
      st.producer->flush(static_cast<int>(cfg.flush_timeout.count()));
      for (auto& [token, p] : st.in_flight)
        p.promise.deliver(caf::make_error(errc::broker_unavailable,
                                          "shutting down"));
      st.in_flight.clear();
    }
    self->quit(msg.reason);
  });
  return {
    [=](atom::replay, int64_t id) -> caf::result<replay_result> {
      auto& st = self->state;
      std::optional<storage::journal_event> ev;
      try {
        ev = st.reader->event_by_id(id);
      } catch (const storage::infra_error& e) {
        count(self, "", "db_unavailable");
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
      if (!ev) {
        count(self, "", "not_found");
        return caf::make_error(errc::not_found,
                               "no journal event " + std::to_string(id));
      }
      // Fail fast while the broker is known to be away: librdkafka reported
      // an error since the last delivery, and a metadata request confirms
      // it. (Otherwise the answer would wait for the message timeout.)
      st.producer->poll(0); // serve pending events: last_error is current
      if (!st.producer->last_error().empty()) {
        std::string why;
        if (!st.producer->reachable(cfg.ping_timeout_ms, why)) {
          count(self, ev->topic, "failed");
          return caf::make_error(errc::broker_unavailable,
                                 "broker unreachable: " + why);
        }
      }
      auto token = st.next_token++;
      auto replay_id = make_replay_id();
      auto sent = st.producer->produce(
        ev->topic, ev->has_key, ev->key,
        replay_headers(ev->headers, ev->id, replay_id), ev->payload_json,
        token, ev->partition);
      if (!sent.ok) {
        count(self, ev->topic, "failed");
        return caf::make_error(errc::broker_unavailable,
                               sent.error_name + ": " + sent.error);
      }
      auto rp = self->make_response_promise<replay_result>();
      st.in_flight.emplace(token,
                           replayer_state::pending{rp, ev->id, ev->topic,
                                                   replay_id});
      schedule_poll(self, cfg.poll_interval);
      return rp;
    },
    [=](atom::ping) -> caf::result<bool> {
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
