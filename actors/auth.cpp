#include "actors/auth.hpp"

#include "api/jwt.hpp"
#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "config/settings.hpp"
#include "storage/auth_store.hpp"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <fstream>
#include <stdexcept>

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
                    const std::string* basic_user, bool cache_only) {
  auto& st = self->state;
  auto now = clock_type::now();
  auto hash = storage::key_hash(secret);
  std::optional<key_identity> id;
  auto cached = st.keys.find(hash);
  if (cached != st.keys.end() && cached->second.until > now)
    id = cached->second.key;
  if (!id && cache_only) {
    // The address is over its failure budget: no PostgreSQL lookup, only a
    // key confirmed lately (a client that was working before) passes.
    if (cached == st.keys.end()
        || now - cached->second.checked > st.cfg.key_stale_grace)
      return {key_check::invalid, {}};
    id = cached->second.key;
  }
  if (!id) {
    bool down = false;
    try {
      if (!backend_ready(self))
        down = true;
      else
        id = st.backend->find_key(secret);
    } catch (const storage::infra_error&) {
      st.backend.reset();
      down = true;
    }
    if (down) {
      // PostgreSQL is away: a key it confirmed within the grace period
      // still works (nobody can revoke it meanwhile: revoking needs
      // PostgreSQL too); an unknown one cannot be checked.
      if (cached == st.keys.end()
          || now - cached->second.checked > st.cfg.key_stale_grace)
        return {key_check::db_down, {}};
      id = cached->second.key;
      if (!cached->second.stale_logged) {
        cached->second.stale_logged = true;
        log::event(spdlog::level::warn, "auth", "auth_key_unverified",
                   {{"name", id->name},
                    {"reason", "PostgreSQL unavailable: accepted as last "
                               "confirmed"}});
      }
    } else if (id) {
      if (st.keys.size() >= 10000)
        st.keys.clear(); // bounded; refilled from PostgreSQL
      st.keys[hash] = auth_state::cached_key{*id, now + st.cfg.key_cache,
                                             now, false};
    } else if (cached != st.keys.end()) {
      st.keys.erase(cached); // revoked or expired since
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

auth_actor::behavior_type
authenticator(auth_actor::stateful_pointer<auth_state> self,
              auth_settings cfg, auth_backend_factory make_backend,
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
      // An address over its failure budget gets 429 for every credential
      // that does not check out without PostgreSQL (no brute force, no
      // lookups); a key confirmed lately or a valid JWT still passes, so
      // clients behind the same proxy are not locked out.
      bool limited = !st.failures->allowed(req.client_addr, now, &wait);
      auto fail = [&](const std::string& reason,
                      const std::string& message) -> caf::error {
        if (limited) {
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
                           c.kind == scheme::basic ? &c.user : nullptr,
                           limited);
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
      // The audit row as a log line too (never credentials: audit rows
      // hold none).
      log::event(spdlog::level::info, "auth", e.outcome == "refused" ? "auth_refused" : "audit",
                 {{"action", e.action},
                  {"target", e.target},
                  {"outcome", e.outcome},
                  {"status", e.status},
                  {"principal", e.who.principal},
                  {"request_id", e.who.request_id},
                  {"client", e.who.client_addr}});
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

namespace ces {

namespace {

class store_backend : public auth_backend {
public:
  explicit store_backend(const std::string& url) : store_(url) {
  }

  std::optional<key_identity> find_key(const std::string& key) override {
    auto row = store_.find_active_key(storage::key_hash(key));
    if (!row)
      return std::nullopt;
    auto granted = auth::parse_role(row->role);
    if (!granted)
      return std::nullopt; // the table's CHECK makes this impossible
    key_identity id;
    id.id = row->id;
    id.name = row->name;
    id.granted = *granted;
    id.scope.all = row->all_tenants;
    id.scope.tenants = row->tenants;
    return id;
  }

  void touch(const std::vector<int64_t>& ids) override {
    store_.touch_last_used(ids);
  }

  void write_audit(const std::vector<audit_entry>& rows) override {
    store_.write_audit(rows);
  }

private:
  storage::auth_store store_;
};

} // namespace

auth_backend_factory auth_backend_on_store(std::string database_url) {
  return [url = std::move(database_url)]() -> std::unique_ptr<auth_backend> {
    return std::make_unique<store_backend>(url);
  };
}

} // namespace ces

namespace ces {

namespace {

/// The whole of a small file with trailing whitespace (a newline) removed.
std::string read_secret_file(const std::string& path, const char* what) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    throw std::runtime_error(std::string{"cannot read "} + what + " "
                             + path);
  std::string text;
  char buf[4096];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > 64 * 1024)
      throw std::runtime_error(std::string{what} + " " + path
                               + " is larger than 64 KiB");
  }
  while (!text.empty()
         && (text.back() == '\n' || text.back() == '\r' || text.back() == ' '
             || text.back() == '\t'))
    text.pop_back();
  if (text.empty())
    throw std::runtime_error(std::string{what} + " " + path + " is empty");
  return text;
}

} // namespace

std::string read_key_file(const std::string& path, const char* what) {
  return read_secret_file(path, what);
}

jwt_checker make_jwt_checker(const settings& s) {
  if (s.jwt_jwks.empty() && s.jwt_hs256_secret_file.empty())
    return {};
  auth::jwt_config jc;
  jc.issuer = s.jwt_issuer;
  jc.audience = s.jwt_audience;
  jc.role_claim = s.jwt_role_claim;
  jc.tenants_claim = s.jwt_tenants_claim;
  if (!s.jwt_hs256_secret_file.empty()) {
    jc.hs256_secret = read_secret_file(s.jwt_hs256_secret_file,
                                       "the HS256 secret file");
    if (jc.hs256_secret.size() < auth::jwt_verifier::min_hs256_secret_bytes)
      throw std::runtime_error(
        "the HS256 secret in " + s.jwt_hs256_secret_file + " is shorter than "
        + std::to_string(auth::jwt_verifier::min_hs256_secret_bytes)
        + " bytes (RFC 7518 3.2)");
  }
  struct jwt_state {
    explicit jwt_state(auth::jwt_config c) : verifier(std::move(c)) {
    }
    auth::jwt_verifier verifier;
    std::unique_ptr<auth::jwks_source> source;
    std::chrono::steady_clock::time_point last_fetch
      = std::chrono::steady_clock::now();
  };
  auto st = std::make_shared<jwt_state>(std::move(jc));
  auto refresh = [](jwt_state& st, const char* why) {
    std::string err;
    auto keys = st.source->fetch(&err);
    if (!keys) {
      log::event(spdlog::level::warn, "auth", "jwks_fetch_failed",
                 {{"source", st.source->location()},
                  {"why", why},
                  {"reason", err}});
      return;
    }
    log::event(spdlog::level::info, "auth", "jwks_loaded",
               {{"source", st.source->location()},
                {"why", why},
                {"keys", static_cast<int64_t>(keys->keys().size())},
                {"skipped", static_cast<int64_t>(keys->skipped())}});
    st.verifier.set_jwks(std::move(*keys));
  };
  if (!s.jwt_jwks.empty()) {
    if (s.jwt_jwks.rfind("https://", 0) != 0) {
      // A file must be there at start (a URL may be down for a while).
      std::ifstream probe{s.jwt_jwks};
      if (!probe)
        throw std::runtime_error("cannot read the JWKS file " + s.jwt_jwks);
    }
    st->source = std::make_unique<auth::jwks_source>(
      s.jwt_jwks, s.jwt_jwks_ca_file,
      std::chrono::seconds(s.jwt_jwks_min_refresh_s));
    refresh(*st, "start");
  }
  return [st, refresh](const std::string& token) -> jwt_check {
    auto now_s = static_cast<int64_t>(std::time(nullptr));
    // Keys the IdP removed must stop working even when no token names a
    // new kid: the JWKS is fetched again every 10 minutes (on use).
    auto mono = std::chrono::steady_clock::now();
    if (st->source && mono - st->last_fetch > std::chrono::minutes(10)
        && st->source->may_refresh(mono)) {
      refresh(*st, "periodic");
      st->last_fetch = mono;
    }
    auto o = st->verifier.verify(token, now_s);
    if (!o.ok && (o.error == "unknown_kid" || o.error == "no_jwks")
        && st->source
        && st->source->may_refresh(std::chrono::steady_clock::now())) {
      refresh(*st, o.error == "no_jwks" ? "no key set" : "unknown kid");
      o = st->verifier.verify(token, now_s);
    }
    jwt_check r;
    r.ok = o.ok;
    r.who = std::move(o.who);
    // Key names cannot hold ':': a JWT subject never passes for a key in
    // audit rows and logs.
    if (r.ok)
      r.who.name = "jwt:" + r.who.name;
    r.error = std::move(o.error);
    return r;
  };
}

} // namespace ces
