#include "actors/supervisor.hpp"

#include "config/logging.hpp"
#include "storage/backoff.hpp"

#include <algorithm>

namespace ces {

namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

int64_t to_ms(caf::timespan x) {
  return duration_cast<milliseconds>(x).count();
}

using self_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

supervised_child* find_child(self_ptr self, const std::string& name) {
  for (auto& c : self->state.children)
    if (c.spec.name == name)
      return &c;
  return nullptr;
}

supervised_child* find_child(self_ptr self, const caf::actor_addr& addr) {
  for (auto& c : self->state.children)
    if (c.hdl && c.hdl.address() == addr)
      return &c;
  return nullptr;
}

/// `name` and every child that depends on it, directly or transitively, in
/// start order.
std::vector<supervised_child*> restart_group(self_ptr self,
                                             const std::string& name) {
  std::vector<supervised_child*> group;
  std::vector<std::string> names{name};
  for (auto& c : self->state.children) {
    bool in_group = c.spec.name == name;
    for (auto& dep : c.spec.depends_on)
      if (std::find(names.begin(), names.end(), dep) != names.end())
        in_group = true;
    if (in_group) {
      if (c.spec.name != name)
        names.push_back(c.spec.name);
      group.push_back(&c);
    }
  }
  return group;
}

bool dependencies_up(self_ptr self, const supervised_child& c) {
  for (auto& dep : c.spec.depends_on) {
    auto d = find_child(self, dep);
    if (d == nullptr || !d->hdl)
      return false;
  }
  return true;
}

void start_child(self_ptr self, supervised_child& c) {
  peer_map peers;
  for (auto& dep : c.spec.depends_on)
    peers.emplace(dep, find_child(self, dep)->hdl);
  c.hdl = c.spec.start(self, peers);
  self->monitor(c.hdl);
  c.state = "running";
  c.started_at = self->clock().now();
}

void stop_all_now(self_ptr self, caf::exit_reason reason) {
  for (auto& c : self->state.children) {
    if (c.hdl) {
      self->demonitor(c.hdl);
      self->send_exit(c.hdl, reason);
      c.hdl = nullptr;
    }
    c.state = "stopped";
  }
}

} // namespace

caf::timespan restart_backoff(const supervision_policy& policy,
                              uint32_t attempt) {
  return capped_backoff(policy.backoff_initial, policy.backoff_max, attempt);
}

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           std::vector<child_spec> specs, supervision_policy policy,
           restart_hook on_restart, restart_hook on_crash) {
  self->set_exception_handler(exception_to_error);
  for (auto& spec : specs) {
    supervised_child c;
    c.spec = std::move(spec);
    self->state.children.emplace_back(std::move(c));
  }
  for (auto& c : self->state.children) {
    start_child(self, c);
    log::event(spdlog::level::info, "supervisor", "actor_started",
               {{"actor", c.spec.name}});
  }
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    auto c = find_child(self, dm.source);
    if (c == nullptr)
      return; // a stale handle
    auto reason = self->system().render(dm.reason);
    c->hdl = nullptr;
    if (st.shutting_down) {
      // Only the end of the child being stopped advances the sequence.
      bool expected = c->state == "stopping";
      c->state = "stopped";
      if (expected) {
        log::event(spdlog::level::info, "supervisor", "actor_stopped",
                   {{"actor", c->spec.name}, {"reason", reason}});
        self->send(self, atom::internal_v, atom::stop_next_v);
        return;
      }
      // Another child ended while the sequence waits (e.g. a PERSISTER
      // crashed while the CONSUMER drains): not restarted; its turn in the
      // sequence is skipped, the others keep theirs.
      c->last_failure = reason;
      if (on_crash)
        on_crash(c->spec.name);
      log::event(spdlog::level::err, "supervisor", "actor_crash",
                 {{"actor", c->spec.name},
                  {"reason", reason},
                  {"action", "not restarted: shutting down"}});
      return;
    }
    // Account for the failure.
    auto now = self->clock().now();
    while (!st.recent_restarts.empty()
           && now - st.recent_restarts.front() > policy.window)
      st.recent_restarts.pop_front();
    c->attempt = now - c->started_at > policy.window ? 1 : c->attempt + 1;
    c->last_failure = reason;
    if (st.recent_restarts.size() >= policy.max_restarts) {
      if (on_crash)
        on_crash(c->spec.name);
      log::event(spdlog::level::critical, "supervisor", "actor_give_up",
                 {{"actor", c->spec.name},
                  {"reason", reason},
                  {"attempt", static_cast<int64_t>(c->attempt)},
                  {"backoff_ms", int64_t{0}},
                  {"restarts_in_window",
                   static_cast<int64_t>(st.recent_restarts.size())},
                  {"window_s",
                   static_cast<int64_t>(to_ms(policy.window) / 1000)}});
      st.shutting_down = true;
      stop_all_now(self, caf::exit_reason::kill);
      self->quit(caf::make_error(errc::restart_budget_exhausted,
                                 c->spec.name, reason));
      return;
    }
    st.recent_restarts.push_back(now);
    auto backoff = restart_backoff(policy, c->attempt);
    c->state = "restarting";
    if (on_crash)
      on_crash(c->spec.name);
    log::event(spdlog::level::err, "supervisor", "actor_crash",
               {{"actor", c->spec.name},
                {"reason", reason},
                {"attempt", static_cast<int64_t>(c->attempt)},
                {"backoff_ms", to_ms(backoff)}});
    // Rest-for-one: stop the dependants, which hold the dead child's handle.
    for (auto d : restart_group(self, c->spec.name)) {
      if (d == c || !d->hdl)
        continue;
      self->demonitor(d->hdl);
      self->send_exit(d->hdl, caf::exit_reason::user_shutdown);
      d->hdl = nullptr;
      d->state = "restarting";
      d->attempt = c->attempt;
      d->last_failure = "dependency " + c->spec.name + " crashed";
      log::event(spdlog::level::warn, "supervisor", "actor_stop_dependant",
                 {{"actor", d->spec.name},
                  {"reason", d->last_failure},
                  {"attempt", static_cast<int64_t>(d->attempt)},
                  {"backoff_ms", to_ms(backoff)}});
    }
    self->delayed_send(self, backoff, atom::internal_v, atom::respawn_v,
                       c->spec.name);
  });
  return {
    [=](atom::internal, atom::respawn, const std::string& name) {
      if (self->state.shutting_down)
        return;
      auto c = find_child(self, name);
      if (c == nullptr)
        return;
      auto backoff = restart_backoff(policy, c->attempt);
      for (auto member : restart_group(self, name)) {
        if (member->hdl || !dependencies_up(self, *member))
          continue;
        start_child(self, *member);
        ++member->restarts;
        if (on_restart)
          on_restart(member->spec.name);
        log::event(spdlog::level::warn, "supervisor", "actor_restart",
                   {{"actor", member->spec.name},
                    {"reason", member->last_failure},
                    {"attempt", static_cast<int64_t>(member->attempt)},
                    {"backoff_ms", to_ms(backoff)}});
      }
    },
    [=](atom::status) {
      std::vector<child_status> result;
      for (auto& c : self->state.children)
        result.push_back(
          child_status{c.spec.name, c.state, c.restarts, c.last_failure});
      return result;
    },
    [=](atom::shutdown) {
      auto& st = self->state;
      if (st.shutting_down)
        return;
      st.shutting_down = true;
      st.stop_cursor = st.children.size();
      log::event(spdlog::level::info, "supervisor", "shutdown_begin", {});
      self->send(self, atom::internal_v, atom::stop_next_v);
    },
    [=](atom::internal, atom::stop_next) {
      auto& st = self->state;
      while (st.stop_cursor > 0) {
        auto& c = st.children[--st.stop_cursor];
        if (!c.hdl) {
          c.state = "stopped";
          continue;
        }
        c.state = "stopping";
        self->send_exit(c.hdl, caf::exit_reason::user_shutdown);
        self->delayed_send(self, policy.stop_timeout, atom::internal_v,
                           atom::force_stop_v, c.spec.name);
        return; // continue when its DOWN arrives
      }
      if (!st.forced.empty()) {
        std::string who;
        for (auto& n : st.forced)
          who += (who.empty() ? "" : ",") + n;
        log::event(spdlog::level::err, "supervisor", "shutdown_incomplete",
                   {{"killed", who}});
        self->quit(caf::make_error(errc::shutdown_forced,
                                   "killed after the stop timeout: " + who));
        return;
      }
      log::event(spdlog::level::info, "supervisor", "shutdown_complete", {});
      self->quit();
    },
    [=](atom::fail, const std::string& name) {
      auto c = find_child(self, name);
      if (c == nullptr || !c->hdl || self->state.shutting_down)
        return false;
      log::event(spdlog::level::warn, "supervisor", "fault_injected",
                 {{"actor", name}});
      self->send_exit(c->hdl,
                      caf::make_error(caf::sec::runtime_error,
                                      std::string{"injected failure"}));
      return true;
    },
    [=](atom::internal, atom::force_stop, const std::string& name) {
      auto c = find_child(self, name);
      if (c == nullptr || !c->hdl)
        return;
      self->state.forced.push_back(name);
      log::event(spdlog::level::err, "supervisor", "actor_stop_timeout",
                 {{"actor", name},
                  {"timeout_ms", to_ms(policy.stop_timeout)}});
      self->send_exit(c->hdl, caf::exit_reason::kill);
    },
  };
}

} // namespace ces
