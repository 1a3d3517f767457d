#include "actors/auth.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "storage/auth_store.hpp"

#include <algorithm>
#include <cmath>

namespace ces {

namespace {

using self_ptr = auth_actor::stateful_pointer<auth_state>;
using clock_type = std::chrono::steady_clock;

void count(self_ptr self, const char* outcome) {
  if (auto m = self->state.stats)
    m->add_auth(outcome);
}

void schedule_flush(self_ptr self) {
  auto& st = self->state;
  if (st.flush_scheduled)
    return;
  st.flush_scheduled = true;
  self->delayed_send(self, st.cfg.audit_flush, atom::internal_v,
                     atom::flush_v);
}

/// Queues one audit row (bounded); written by the next flush.
void enqueue_audit(self_ptr self, audit_entry e) {
  auto& st = self->state;
  if (st.audit_queue.size() >= st.cfg.audit_queue_max) {
    // PostgreSQL is away for long, or a flood: keep a count per address,
    // written as one summary row once there is room again.
    if (st.audit_overflow.size() < st.cfg.audit_queue_max
        || st.audit_overflow.count(e.who.client_addr) > 0)
      ++st.audit_overflow[e.who.client_addr];
    if (auto m = st.stats)
      m->add_audit("overflow", 1);
  } else {
    st.audit_queue.push_back(std::move(e));
  }
  schedule_flush(self);
}

bool backend_ready(self_ptr self) {
  auto& st = self->state;
  if (!st.backend)
    st.backend = st.make_backend();
  return st.backend != nullptr;
}

void flush(self_ptr self) {
  auto& st = self->state;
  st.flush_scheduled = false;
  // Summary rows for refusals that did not fit in the queue.
  if (!st.audit_overflow.empty()
      && st.audit_queue.size() < st.cfg.audit_queue_max) {
    for (auto& [addr, n] : st.audit_overflow) {
      audit_entry e;
      e.who.client_addr = addr;
      e.action = "auth";
      e.target = "*";
      e.outcome = "refused";
      e.counts = "{\"refused\":" + std::to_string(n) + "}";
      e.parameters = "{\"reason\":\"audit queue full: refusals counted\"}";
      st.audit_queue.push_back(std::move(e));
    }
    st.audit_overflow.clear();
  }
  auto now = clock_type::now();
  try {
    if (!st.audit_queue.empty() && backend_ready(self)) {
      while (!st.audit_queue.empty()) {
        auto n = std::min(st.audit_queue.size(), st.cfg.audit_batch);
        std::vector<audit_entry> chunk(
          std::make_move_iterator(st.audit_queue.begin()),
          std::make_move_iterator(st.audit_queue.begin() + n));
        try {
          st.backend->write_audit(chunk);
        } catch (...) {
          // Put them back in front: nothing is lost while PostgreSQL is away.
          std::move(chunk.begin(), chunk.end(), st.audit_queue.begin());
          throw;
        }
        st.audit_queue.erase(st.audit_queue.begin(),
                             st.audit_queue.begin() + n);
        if (auto m = st.stats)
          m->add_audit("written", n);
      }
    }
    if (!st.used_keys.empty() && now - st.last_touch >= st.cfg.touch_interval
        && backend_ready(self)) {
      std::sort(st.used_keys.begin(), st.used_keys.end());
      st.used_keys.erase(std::unique(st.used_keys.begin(), st.used_keys.end()),
                         st.used_keys.end());
      st.backend->touch(st.used_keys);
      st.used_keys.clear();
      st.last_touch = now;
    }
  } catch (const storage::infra_error& e) {
    st.backend.reset();
    log::event(spdlog::level::warn, "auth", "audit_write_failed",
               {{"queued", static_cast<int64_t>(st.audit_queue.size())},
                {"reason", e.what()}});
    if (auto m = st.stats)
      m->add_audit("retry", 1);
  }
  if (!st.audit_queue.empty() || !st.used_keys.empty()
      || !st.audit_overflow.empty())
    schedule_flush(self);
}

/// The audit row and log line of a refused authentication.
void refused(self_ptr self, const auth_request& req, int status,
             const std::string& reason) {
  audit_entry e;
  e.who.request_id = req.request_id;
  e.who.client_addr = req.client_addr;
  e.action = "auth";
  e.target = req.target;
  e.outcome = "refused";
  e.status = status;
  e.parameters = "{\"reason\":\"" + reason + "\"}";
  enqueue_audit(self, std::move(e));
  log::event(spdlog::level::info, "auth", "auth_refused",
             {{"status", status},
              {"reason", reason},
              {"client", req.client_addr},
              {"request_id", req.request_id},
              {"target", req.target}});
}

caf::error unauthenticated(const std::string& why) {
  return caf::make_error(errc::unauthenticated, why);
}

/// What check_key() found.
struct key_check {
  enum { ok, invalid, db_down } outcome = invalid;
  auth::principal who;
};

/// The key `secret` (shape checked), from the cache or PostgreSQL.
key_check check_key(self_ptr self, const std::string& secret,
                    const std::string* basic_user) {
  auto& st = self->state;
  auto now = clock_type::now();
  auto hash = storage::key_hash(secret);
  std::optional<key_identity> id;
  if (auto i = st.keys.find(hash); i != st.keys.end()) {
    if (i->second.until > now)
      id = i->second.key;
    else
      st.keys.erase(i);
  }
  if (!id) {
    try {
      if (!backend_ready(self))
        return {key_check::db_down, {}};
      id = st.backend->find_key(secret);
    } catch (const storage::infra_error&) {
      st.backend.reset();
      return {key_check::db_down, {}};
    }
    if (id && st.cfg.key_cache.count() > 0) {
      if (st.keys.size() >= 10000)
        st.keys.clear(); // bounded; refilled from PostgreSQL
      st.keys[hash] = auth_state::cached_key{*id, now + st.cfg.key_cache};
    }
  }
  if (!id || (basic_user != nullptr && *basic_user != id->name))
    return {key_check::invalid, {}};
  st.used_keys.push_back(id->id);
  schedule_flush(self);
  key_check r{key_check::ok, {}};
  r.who.name = id->name;
  r.who.kind = "key";
  r.who.granted = id->granted;
  r.who.scope = id->scope;
  r.who.scope.unknown_tenant = id->granted == auth::role::admin;
  return r;
}

} // namespace

auth::principal anonymous_admin() {
  auth::principal p;
  p.name = "anonymous";
  p.kind = "none";
  p.granted = auth::role::admin;
  p.scope.all = true;
  p.scope.unknown_tenant = true;
  return p;
}

auth_actor::behavior_type auth(auth_actor::stateful_pointer<auth_state> self,
                               auth_settings cfg,
                               auth_backend_factory make_backend,
                               jwt_checker check_jwt, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.cfg = cfg;
  st.make_backend = std::move(make_backend);
  st.check_jwt = std::move(check_jwt);
  st.stats = stats;
  st.failures = std::make_unique<auth::keyed_buckets>(
    cfg.failures_per_s, cfg.failures_burst, cfg.max_addresses);
  if (!cfg.enabled)
    self->send(self, atom::internal_v, atom::warn_v);
  self->set_exit_handler([=](caf::exit_msg& msg) {
    // Write what is queued before stopping (bounded by the statement
    // timeout of the backend).
    if (!self->state.audit_queue.empty())
      flush(self);
    self->quit(msg.reason);
  });
  return {
    [=](atom::authenticate, auth_request& req) -> caf::result<auth::principal> {
      auto& st = self->state;
      if (!st.cfg.enabled)
        return anonymous_admin();
      auto now = clock_type::now();
      clock_type::duration wait{};
      // An address over its failure budget is refused before any check:
      // no brute force, and other addresses are not affected.
      if (!st.failures->allowed(req.client_addr, now, &wait)) {
        auto secs = std::max<int64_t>(
          1, static_cast<int64_t>(std::ceil(
               std::chrono::duration<double>(wait).count())));
        count(self, "rate_limited");
        refused(self, req, 429, "too many failed authentications");
        return caf::make_error(errc::rate_limited,
                               std::string{"too many failed authentication "
                                           "attempts from this address"},
                               int64_t{secs});
      }
      auto fail = [&](const std::string& reason,
                      const std::string& message) -> caf::error {
        st.failures->take(req.client_addr, 1, now);
        count(self, "unauthenticated");
        refused(self, req, 401, reason);
        return unauthenticated(message);
      };
      auto c = auth::parse_authorization(req.authorization);
      using scheme = auth::credentials::scheme;
      switch (c.kind) {
        case scheme::none:
          return fail("no credentials",
                      "authentication required: send an API key or a JWT "
                      "as 'Authorization: Bearer <token>'");
        case scheme::malformed:
          return fail("malformed Authorization header",
                      "malformed Authorization header: use 'Bearer "
                      "<token>' or 'Basic <base64(name:key)>'");
        case scheme::basic:
          if (!auth::looks_like_key(c.secret))
            return fail("invalid credentials", "invalid credentials");
          break;
        case scheme::bearer:
          break;
      }
      if (auth::looks_like_key(c.secret)) {
        auto r = check_key(self, c.secret,
                           c.kind == scheme::basic ? &c.user : nullptr);
        if (r.outcome == key_check::ok) {
          count(self, "ok");
          return r.who;
        }
        if (r.outcome == key_check::db_down) {
          count(self, "db_unavailable");
          return caf::make_error(errc::db_unavailable,
                                 std::string{"cannot check the API key: "
                                             "PostgreSQL is unavailable"});
        }
        return fail("invalid credentials", "invalid credentials");
      }
      if (auth::looks_like_jwt(c.secret)) {
        if (!st.check_jwt)
          return fail("jwt not configured", "invalid credentials");
        auto j = st.check_jwt(c.secret);
        if (!j.ok)
          return fail("jwt: " + j.error, "invalid token: " + j.error);
        count(self, "ok");
        return j.who;
      }
      return fail("invalid credentials", "invalid credentials");
    },
    [=](atom::audit, audit_entry& e) {
      if (e.action == "auth" && e.status == 403)
        count(self, "forbidden");
      enqueue_audit(self, std::move(e));
    },
    [=](atom::internal, atom::flush) { flush(self); },
    [=](atom::internal, atom::warn) {
      log::event(spdlog::level::warn, "auth", "auth_disabled",
                 {{"setting", "API_AUTH=off"},
                  {"effect", "every request is admin of every tenant; do "
                             "not expose this port"}});
      if (auto m = self->state.stats)
        m->add_auth("disabled_warning");
      self->delayed_send(self, self->state.cfg.off_warning, atom::internal_v,
                         atom::warn_v);
    },
  };
}

} // namespace ces
