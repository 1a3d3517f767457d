#include "actors/http_bridge.hpp"

#include "actors/auth.hpp"
#include "actors/pg_probe.hpp"
#include "api/admin_json.hpp"
#include "api/dlq_json.hpp"
#include "api/filters.hpp"
#include "api/idempotency.hpp"
#include "api/json.hpp"
#include "api/openapi.hpp"
#include "api/replay_json.hpp"
#include "api/server.hpp"
#include "storage/headers_json.hpp"

namespace ces {

namespace {

using self_ptr = http_bridge_actor::stateful_pointer<http_bridge_state>;
using request_ptr = std::shared_ptr<api::pending_request>;

/// Collects the readiness checks and answers once all probes replied.
struct ready_probe {
  request_ptr req;
  std::vector<api::readiness_check> checks;
  int outstanding = 3;

  void done() {
    if (--outstanding > 0)
      return;
    auto ok = api::all_ready(checks);
    req->respond(ok ? 200 : 503, api::ready_json(checks));
  }
};

void ready(self_ptr self, const http_bridge_peers& peers,
           const http_bridge_settings& cfg, request_ptr req) {
  auto probe = std::make_shared<ready_probe>();
  probe->req = std::move(req);
  auto failed = [=](std::string name) {
    return [=](caf::error& err) {
      probe->checks.push_back({name, false, error_message(self->system(), err)});
      probe->done();
    };
  };
  // Not the JOURNAL when there is a PG_PROBE: its mailbox holds reads.
  auto postgres = peers.postgres
                    ? caf::actor_cast<caf::actor>(peers.postgres)
                    : caf::actor_cast<caf::actor>(peers.journal);
  self->request(postgres, cfg.ready_timeout, atom::ping_v)
    .then(
      [=](bool) {
        probe->checks.push_back({"postgres", true, ""});
        probe->done();
      },
      failed("postgres"));
  self->request(peers.replayer, cfg.ready_timeout, atom::ping_v)
    .then(
      [=](bool) {
        probe->checks.push_back({"kafka", true, ""});
        probe->done();
      },
      failed("kafka"));
  self->request(peers.supervisor, cfg.ready_timeout, atom::status_v)
    .then(
      [=](std::vector<child_status>& children) {
        for (auto& c : children)
          probe->checks.push_back(
            {"actor:" + c.name, c.state == "running",
             c.state == "running" ? ""
                                  : c.state + (c.last_failure.empty()
                                                 ? std::string{}
                                                 : ": " + c.last_failure)});
        probe->done();
      },
      failed("actors"));
}

} // namespace

std::pair<int, const char*> http_error(const caf::error& err) {
  if (err.category() == caf::atom("ces")) {
    switch (static_cast<errc>(err.code())) {
      case errc::not_found:
        return {404, "not_found"};
      case errc::db_unavailable:
        return {503, "db_unavailable"};
      case errc::broker_unavailable:
        return {503, "broker_unavailable"};
      case errc::delivery_timeout:
        return {503, "broker_timeout"};
      case errc::delivery_failed:
        return {502, "broker_rejected"};
      case errc::expired:
        return {504, "timeout"};
      case errc::rate_limited:
        return {429, "rate_limited"};
      case errc::forbidden:
        return {403, "forbidden"};
      case errc::unauthenticated:
        return {401, "unauthenticated"};
      case errc::bad_request:
        return {400, "bad_request"};
      case errc::conflict:
        return {409, "conflict"};
      case errc::gone:
        return {404, "gone"}; // as not_found, with its own code
      case errc::unprocessable:
        return {422, "unprocessable"};
      default:
        break;
    }
  }
  if (err == caf::sec::request_timeout)
    return {503, "upstream_timeout"};
  // The actor that should answer died (it is being restarted).
  return {503, "unavailable"};
}

namespace {

/// "replay/42", "events/7", "keys/ops", "events_latest": what a request is
/// about, for audit rows.
std::string target_of(const api::parsed_request& r) {
  std::string t = api::to_string(r.kind);
  if (r.id != 0)
    t += "/" + std::to_string(r.id);
  if (!r.name.empty())
    t += "/" + r.name;
  return t;
}

requester who_of(const auth::principal& p, const api::request_meta& m) {
  auto r = auth::to_requester(p);
  r.request_id = m.request_id;
  r.client_addr = m.client_addr;
  return r;
}

/// The answer to an error of the AUTH actor or a peer, with the headers it
/// needs (WWW-Authenticate on 401, Retry-After on 429).
void answer_refusal(self_ptr self, const request_ptr& req,
                    const caf::error& err) {
  auto [status, generic] = http_error(err);
  // A stable code carried by the error (bad_request: "too_many_events", ...)
  // wins over the generic one.
  std::string code = generic;
  if (err.category() == caf::atom("ces"))
    if (auto c = context_code(err.context()))
      code = *c;
  api::header_list headers;
  if (status == 401)
    headers.emplace_back("WWW-Authenticate",
                         "Bearer realm=\"crm-events-sink\", Basic "
                         "realm=\"crm-events-sink\", charset=\"UTF-8\"");
  if (status == 429)
    headers.emplace_back("Retry-After", std::to_string(std::max<int64_t>(
                                          1, retry_after_s(err.context()))));
  req->respond(status,
               api::error_json(code, error_message(self->system(), err)),
               headers);
}

/// Percent-encodes a query value (RFC 3986 unreserved kept).
std::string query_escape(std::string_view s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

/// The RFC 8288 Link header of the next page: the same query with `cursor`
/// set (opaque text: api::encode_cursor(), or /audit's id).
std::string next_link(std::string_view path, const api::parsed_request& r,
                      const std::string& cursor) {
  std::string q;
  for (auto& [k, v] : r.params) {
    if (k == "cursor" || k == "limit")
      continue;
    q += (q.empty() ? "?" : "&") + k + "=" + query_escape(v);
  }
  q += (q.empty() ? "?" : "&") + std::string{"limit="}
       + std::to_string(r.limit) + "&cursor=" + query_escape(cursor);
  return "<" + std::string{path} + q + ">; rel=\"next\"";
}

void bad(const request_ptr& req, const char* code, const std::string& msg) {
  req->respond(400, api::error_json(code, msg));
}

void bad(const request_ptr& req, const api::filter_error& err) {
  req->respond(400, api::error_json(err.code, err.message));
}

/// The headers of a page of `n` rows out of `limit` whose last row has id
/// `last_id`: X-Truncated when the byte bound cut it, and the Link to the
/// next page when it is full or cut (there may be more).
api::header_list page_headers(std::string_view path,
                              const api::parsed_request& r, size_t n,
                              int64_t last_id, bool truncated) {
  api::header_list headers;
  if (truncated)
    headers.emplace_back("X-Truncated", "true");
  if (n > 0 && (truncated || n >= static_cast<size_t>(r.limit)))
    headers.emplace_back("Link",
                         next_link(path, r, api::encode_cursor(last_id)));
  return headers;
}

} // namespace

http_bridge_actor::behavior_type
http_bridge(http_bridge_actor::stateful_pointer<http_bridge_state> self,
            http_bridge_peers peers, http_bridge_settings cfg) {
  self->set_exception_handler(exception_to_error);
  if (!peers.postgres && !cfg.database_url.empty())
    peers.postgres = self->spawn<caf::detached + caf::linked>(
      pg_probe, cfg.database_url,
      static_cast<int>(cfg.ready_timeout.count()));
  // A read still queued at the JOURNAL after the bridge stopped waiting for
  // it is not worth running: the JOURNAL drops it (errc::expired).
  auto read_deadline = [cfg] {
    return caf::make_timestamp() + cfg.read_timeout;
  };
  auto audit = [=](audit_entry e) {
    if (peers.auth)
      self->send(peers.auth, atom::audit_v, std::move(e));
  };
  // A filter naming a tenant outside the principal's scope: 403 with an
  // audit row, like a role refusal (not an empty answer).
  auto refuse_scope = [=](const request_ptr& req,
                          const api::parsed_request& r,
                          const auth::principal& who, const std::string& why) {
    audit_entry e;
    e.who = who_of(who, req->meta());
    e.action = "auth";
    e.target = target_of(r);
    e.outcome = "refused";
    e.status = 403;
    e.parameters = "{\"reason\":";
    storage::append_json_string(e.parameters, why);
    e.parameters += "}";
    audit(std::move(e));
    req->respond(403, api::error_json("forbidden", why));
  };
  // The filter (read by `parse`, e.g. api::parse_event_filter) and cursor
  // of a find route. False when the request was answered already: 400 with
  // the filter's code, or 403 for a tenant outside the scope.
  auto take_filter = [=](const request_ptr& req, const api::parsed_request& r,
                         const auth::principal& who, auto parse, auto& f,
                         int64_t& before) {
    api::filter_error fe;
    if (!parse(r.params, f, fe) || !api::parse_cursor(r.params, before, fe)) {
      bad(req, fe);
      return false;
    }
    if (std::string why; !api::filter_in_scope(f.tenant_id, who.scope, why)) {
      refuse_scope(req, r, who, why);
      return false;
    }
    return true;
  };
  // Serves a request of an authenticated principal allowed on its route.
  auto serve = [=](request_ptr req, api::parsed_request r,
                   auth::principal who) {
    auto fail = [=](caf::error& err) { answer_refusal(self, req, err); };
    switch (r.kind) {
      case api::route_kind::health:
        req->respond(200, api::health_json());
        return;
      case api::route_kind::ready:
        ready(self, peers, cfg, req);
        return;
      case api::route_kind::openapi:
        req->respond(200, std::string{api::openapi_json()});
        return;
      case api::route_kind::events_latest:
        self
          ->request(peers.journal, cfg.read_timeout, atom::latest_v, r.limit,
                    who.scope, read_deadline())
          .then(
            [=](std::vector<storage::journal_event>& xs, bool truncated) {
              // The body stays a JSON array; a page cut by the byte bound
              // says so in a header.
              api::header_list headers;
              if (truncated)
                headers.emplace_back("X-Truncated", "true");
              req->respond(200, api::events_json(xs), headers);
            },
            fail);
        return;
      case api::route_kind::event_by_id:
        // Another tenant's event is "not found": its existence is not
        // revealed.
        self
          ->request(peers.journal, cfg.read_timeout, atom::get_v, r.id,
                    who.scope, read_deadline())
          .then(
            [=](std::vector<storage::journal_event>& xs) {
              if (xs.empty())
                req->respond(404, api::error_json(
                                    "not_found", "no journal event "
                                                   + std::to_string(r.id)));
              else
                req->respond(200, api::event_json(xs.front()));
            },
            fail);
        return;
      case api::route_kind::replay:
        self
          ->request(peers.replayer, cfg.replay_timeout, atom::replay_v, r.id,
                    who_of(who, req->meta()))
          .then(
            [=](replay_result& x) {
              req->respond(200,
                           api::replay_json(x.event_id, x.topic, x.partition,
                                            x.offset, x.replay_id));
            },
            fail);
        return;
      case api::route_kind::events_find: {
        event_filter f;
        int64_t before = 0;
        if (!take_filter(req, r, who, api::parse_event_filter, f, before))
          return;
        self
          ->request(peers.journal, cfg.read_timeout, atom::find_v, f,
                    who.scope, r.limit, before, read_deadline())
          .then(
            [=](std::vector<storage::journal_event>& xs, bool truncated) {
              auto last = xs.empty() ? 0 : xs.back().id;
              req->respond(200, api::events_json(xs),
                           page_headers("/events", r, xs.size(), last,
                                        truncated));
            },
            fail);
        return;
      }
      case api::route_kind::dlq_latest: {
        // Without filters and cursor: the newest `limit` entries, an array
        // as before issue 10.
        dlq_filter f;
        int64_t before = 0;
        if (!take_filter(req, r, who, api::parse_dlq_filter, f, before))
          return;
        self
          ->request(peers.dlq, cfg.read_timeout, atom::find_v, f, who.scope,
                    r.limit, before)
          .then(
            [=](std::vector<storage::dlq_entry_row>& xs) {
              auto last = xs.empty() ? 0 : xs.back().id;
              req->respond(200, api::dlq_json(xs),
                           page_headers("/dlq", r, xs.size(), last, false));
            },
            fail);
        return;
      }
      case api::route_kind::dlq_by_id:
        // Out of scope is "not found", as for journal events.
        self
          ->request(peers.dlq, cfg.read_timeout, atom::get_v, r.id, who.scope)
          .then(
            [=](std::vector<storage::dlq_entry_row>& xs) {
              if (xs.empty())
                req->respond(404, api::error_json(
                                    "not_found", "no DLQ entry "
                                                   + std::to_string(r.id)));
              else
                req->respond(200, api::dlq_entry_json(xs.front()));
            },
            fail);
        return;
      case api::route_kind::supervision:
        self->request(peers.supervisor, cfg.read_timeout, atom::status_v)
          .then(
            [=](std::vector<child_status>& children) {
              std::vector<api::actor_state> xs;
              for (auto& c : children)
                xs.push_back({c.name, c.state, c.restarts, c.last_failure});
              req->respond(200, api::supervision_json(xs));
            },
            fail);
        return;
      case api::route_kind::debug_fail: {
        audit_entry e;
        e.who = who_of(who, req->meta());
        e.action = "debug.fail";
        e.target = "actor/" + r.name;
        self
          ->request(peers.supervisor, cfg.read_timeout, atom::fail_v, r.name)
          .then(
            [=](bool done) mutable {
              e.outcome = done ? "ok" : "failed";
              e.status = done ? 202 : 404;
              audit(e);
              if (done)
                req->respond(202, "{\"status\":\"failure injected\","
                                  "\"actor\":\""
                                    + r.name + "\"}");
              else
                req->respond(404, api::error_json(
                                    "not_found",
                                    "no running actor " + r.name));
            },
            [=](caf::error& err) mutable {
              e.outcome = "failed";
              e.status = http_error(err).first;
              audit(e);
              answer_refusal(self, req, err);
            });
        return;
      }
      case api::route_kind::keys_list:
      case api::route_kind::key_create:
      case api::route_kind::key_revoke:
      case api::route_kind::audit:
        if (!peers.admin) {
          req->respond(503, api::error_json("unavailable",
                                            "key and audit administration "
                                            "is not running"));
          return;
        }
        break;
      case api::route_kind::replays_create:
      case api::route_kind::dlq_bulk_retry:
      case api::route_kind::dlq_bulk_discard:
      case api::route_kind::jobs_list:
      case api::route_kind::job_get:
      case api::route_kind::job_cancel:
        if (!peers.jobs) {
          req->respond(503, api::error_json("unavailable",
                                            "bulk replay jobs are not "
                                            "running"));
          return;
        }
        break;
      case api::route_kind::dlq_retry:
      case api::route_kind::dlq_discard:
      case api::route_kind::dlq_purge:
        break;
      default:
        req->respond(404, api::error_json("not_found", "no such route"));
        return;
    }
    auto me = who_of(who, req->meta());
    switch (r.kind) {
      case api::route_kind::keys_list:
        self->request(peers.admin, cfg.read_timeout, atom::list_v)
          .then(
            [=](std::vector<storage::api_key_row>& xs) {
              req->respond(200, api::keys_json(xs));
            },
            fail);
        return;
      case api::route_kind::key_create: {
        storage::new_key k;
        std::string why;
        if (!api::parse_new_key(r.body, k, why)) {
          bad(req, "bad_request", why);
          return;
        }
        self->request(peers.admin, cfg.read_timeout, atom::create_v,
                      std::move(k), me)
          .then(
            [=](storage::created_key& x) {
              req->respond(201, api::created_key_json(x));
            },
            fail);
        return;
      }
      case api::route_kind::key_revoke:
        self
          ->request(peers.admin, cfg.read_timeout, atom::revoke_v, r.name, me)
          .then(
            [=](bool done) {
              if (done)
                // r.name is [A-Za-z0-9._-]{1,64} (routes.cpp): no escaping.
                req->respond(200, "{\"status\":\"revoked\",\"name\":\""
                                    + r.name + "\"}");
              else
                req->respond(404, api::error_json(
                                    "not_found",
                                    "no active key named " + r.name));
            },
            fail);
        return;
      case api::route_kind::audit: {
        storage::audit_filter f;
        if (auto v = r.param("action"))
          f.action = *v;
        if (auto v = r.param("principal"))
          f.principal = *v;
        for (auto [name, field] : {std::pair{"from", &f.from},
                                   std::pair{"to", &f.to}}) {
          if (auto v = r.param(name)) {
            // In UTC: PostgreSQL refuses offsets beyond +-15:59.
            *field = api::rfc3339_utc(*v);
            if (field->empty()) {
              bad(req, "bad_time",
                  std::string{"'"} + name
                    + "' must be an RFC 3339 time such as "
                      "2024-05-01T12:00:00Z");
              return;
            }
          }
        }
        int64_t before = 0;
        if (auto v = r.param("cursor")) {
          before = api::parse_positive_id(*v);
          if (before == 0) {
            bad(req, "bad_cursor",
                "'cursor' must be the value given in the Link header of "
                "the previous page");
            return;
          }
        }
        auto limit = r.limit;
        self
          ->request(peers.admin, cfg.read_timeout, atom::query_v, f, limit,
                    before)
          .then(
            [=](std::vector<storage::audit_row>& xs) {
              api::header_list headers;
              if (!xs.empty() && static_cast<int32_t>(xs.size()) == limit)
                headers.emplace_back(
                  "Link", next_link("/audit", r, std::to_string(xs.back().id)));
              req->respond(200, api::audit_json(xs), headers);
            },
            fail);
        return;
      }
      case api::route_kind::replays_create: {
        replay_request rr;
        api::filter_error err;
        api::replay_defaults defaults;
        defaults.max_events = cfg.jobs_default_max_events;
        if (!api::parse_replay_request(r.body, defaults, rr, err)) {
          bad(req, err.code.c_str(), err.message);
          return;
        }
        if (rr.dry_run) {
          self
            ->request(peers.jobs, cfg.jobs_timeout, atom::plan_v,
                      std::move(rr), me)
            .then(
              [=](replay_plan& p) { req->respond(200, api::plan_json(p)); },
              fail);
          return;
        }
        self
          ->request(peers.jobs, cfg.jobs_timeout, atom::create_v,
                    std::move(rr), me)
          .then(
            [=](job_row& j) {
              req->respond(202, api::job_created_json(j),
                           {{"Location", "/jobs/" + std::to_string(j.id)}});
            },
            fail);
        return;
      }
      case api::route_kind::dlq_retry: {
        dlq_retry_request rq;
        api::filter_error err;
        if (!api::parse_dlq_retry_request(r.body, r.id, rq, err)) {
          bad(req, err.code.c_str(), err.message);
          return;
        }
        self
          ->request(peers.dlq, cfg.dlq_action_timeout, atom::retry_v,
                    std::move(rq), me)
          .then(
            [=](dlq_retry_result& x) {
              req->respond(200, api::dlq_retry_result_json(x));
            },
            fail);
        return;
      }
      case api::route_kind::dlq_discard: {
        std::string reason;
        api::filter_error err;
        if (!api::parse_dlq_discard_request(r.body, reason, err)) {
          bad(req, err.code.c_str(), err.message);
          return;
        }
        self
          ->request(peers.dlq, cfg.dlq_action_timeout, atom::discard_v, r.id,
                    std::move(reason), me)
          .then(
            [=](std::vector<storage::dlq_entry_row>& xs) {
              if (xs.empty())
                req->respond(404, api::error_json(
                                    "not_found", "no DLQ entry "
                                                   + std::to_string(r.id)));
              else
                req->respond(200, api::dlq_entry_json(xs.front()));
            },
            fail);
        return;
      }
      case api::route_kind::dlq_purge: {
        std::string status, before;
        api::filter_error err;
        if (!api::parse_dlq_purge(r.params, status, before, err)) {
          bad(req, err);
          return;
        }
        self
          ->request(peers.dlq, cfg.dlq_action_timeout, atom::purge_v,
                    std::move(status), std::move(before), me)
          .then(
            [=](int64_t n) { req->respond(200, api::dlq_purged_json(n)); },
            fail);
        return;
      }
      case api::route_kind::dlq_bulk_retry:
      case api::route_kind::dlq_bulk_discard: {
        dlq_bulk_request dr;
        api::filter_error err;
        api::replay_defaults defaults;
        defaults.max_events = cfg.jobs_default_max_events;
        auto action = r.kind == api::route_kind::dlq_bulk_retry ? "retry"
                                                                : "discard";
        if (!api::parse_dlq_bulk_request(r.body, action, defaults, dr, err)) {
          bad(req, err.code.c_str(), err.message);
          return;
        }
        if (dr.dry_run) {
          self
            ->request(peers.jobs, cfg.jobs_timeout, atom::plan_v,
                      std::move(dr), me)
            .then(
              [=](dlq_plan& p) { req->respond(200, api::dlq_plan_json(p)); },
              fail);
          return;
        }
        self
          ->request(peers.jobs, cfg.jobs_timeout, atom::create_v,
                    std::move(dr), me)
          .then(
            [=](job_row& j) {
              req->respond(202, api::job_created_json(j),
                           {{"Location", "/jobs/" + std::to_string(j.id)}});
            },
            fail);
        return;
      }
      case api::route_kind::jobs_list: {
        job_filter f;
        api::filter_error err;
        int64_t before = 0;
        if (!api::parse_job_filter(r.params, f, err)
            || !api::parse_cursor(r.params, before, err)) {
          bad(req, err.code.c_str(), err.message);
          return;
        }
        auto limit = r.limit;
        self
          ->request(peers.jobs, cfg.jobs_timeout, atom::list_v, f, limit,
                    before, me)
          .then(
            [=](std::vector<job_row>& xs) {
              api::header_list headers;
              if (!xs.empty() && static_cast<int32_t>(xs.size()) == limit)
                headers.emplace_back(
                  "Link",
                  next_link("/jobs", r, api::encode_cursor(xs.back().id)));
              req->respond(200, api::jobs_json(xs), headers);
            },
            fail);
        return;
      }
      case api::route_kind::job_get:
      case api::route_kind::job_cancel: {
        auto reply = [=](job_row& j) { req->respond(200, api::job_json(j)); };
        if (r.kind == api::route_kind::job_get)
          self->request(peers.jobs, cfg.jobs_timeout, atom::get_v, r.id, me)
            .then(reply, fail);
        else
          self->request(peers.jobs, cfg.jobs_timeout, atom::cancel_v, r.id, me)
            .then(reply, fail);
        return;
      }
      default:
        break;
    }
  };
  // Serves a request with an Idempotency-Key once per (principal, key):
  // claims the key first; the answer that goes out settles the claim.
  auto serve_once = [=](request_ptr req, api::parsed_request r,
                        auth::principal who) {
    const auto& key = req->meta().idempotency_key;
    if (key.empty() || !api::takes_idempotency_key(r.kind)) {
      serve(std::move(req), std::move(r), std::move(who));
      return;
    }
    auto idem = peers.idempotency;
    if (!idem) {
      req->respond(503, api::error_json("unavailable",
                                        "Idempotency-Key is not available"));
      return;
    }
    // Keys are per principal: its kind (key, jwt, ...) and name. The scope
    // is part of the request: a later key of the same name but other
    // tenants (a revoked key's name reused) gets 422, not the first answer.
    auto principal = who.kind + ":" + who.name;
    std::string scope = who.scope.all ? "*" : "";
    for (auto& t : who.scope.tenants)
      scope += t + '\x1f';
    auto fingerprint = api::request_fingerprint("POST", r) + " scope:"
                       + api::sha256_hex(scope);
    self
      ->request(idem, cfg.read_timeout, atom::claim_v, principal, key,
                fingerprint)
      .then(
        [=](idempotent_answer& a) mutable {
          if (a.state == "done") {
            auto headers = a.headers;
            headers.emplace_back("Idempotent-Replayed", "true");
            req->respond(a.status, std::move(a.body), headers);
            return;
          }
          if (a.state == "pending") {
            req->respond(409,
                         api::error_json("idempotency_in_progress",
                                         "a request with this "
                                         "Idempotency-Key is in progress"),
                         {{"Retry-After", std::to_string(std::max<int64_t>(
                                            1, a.retry_after_s))}});
            return;
          }
          if (a.state != "new") {
            req->respond(422, api::error_json(
                                "idempotency_key_reused",
                                "this Idempotency-Key was used for another "
                                "request (method, path or body)"));
            return;
          }
          auto claimed = key;
          // Runs on whichever thread answers, also when the client is gone.
          auto settled = [idem, principal, claimed](
                           int status, const std::string& body,
                           const api::header_list& headers) {
            switch (api::settle(status, body)) {
              case api::idempotency_settlement::complete:
                caf::anon_send(idem, atom::complete_v, principal, claimed,
                               idempotent_answer{"done", status, body,
                                                 headers, 0});
                break;
              case api::idempotency_settlement::release:
                caf::anon_send(idem, atom::release_v, principal, claimed);
                break;
              case api::idempotency_settlement::keep:
                break; // pending until the claim expires
            }
          };
          if (!req->on_answer(settled)) {
            // Answered while claiming (504): nothing was done.
            caf::anon_send(idem, atom::release_v, principal, claimed);
            return;
          }
          serve(req, std::move(r), std::move(who));
        },
        [=](caf::error& err) { answer_refusal(self, req, err); });
  };
  return {
    [=](request_ptr& req, api::parsed_request& r) {
      // Probes and the API's description need no credentials.
      if (r.kind == api::route_kind::health
          || r.kind == api::route_kind::ready
          || r.kind == api::route_kind::openapi
          || (!peers.auth && cfg.serve_without_auth)) {
        serve_once(req, std::move(r), anonymous_admin());
        return;
      }
      if (!peers.auth) {
        // Fail closed.
        req->respond(503, api::error_json("unavailable",
                                          "authentication is not running"));
        return;
      }
      const auto& meta = req->meta();
      auth_request ar{meta.authorization, meta.client_addr, meta.request_id,
                      target_of(r)};
      self->request(peers.auth, cfg.auth_timeout, atom::authenticate_v,
                    std::move(ar))
        .then(
          [=](auth::principal& who) mutable {
            if (!auth::may(who, r.kind)) {
              audit_entry e;
              e.who = who_of(who, req->meta());
              e.action = "auth";
              e.target = target_of(r);
              e.outcome = "refused";
              e.status = 403;
              e.parameters = std::string{"{\"reason\":\"role "}
                             + auth::to_string(who.granted)
                             + " may not call this route\"}";
              audit(std::move(e));
              req->respond(403, api::error_json(
                                  "forbidden",
                                  std::string{"role "}
                                    + auth::to_string(who.granted)
                                    + " may not call "
                                    + api::to_string(r.kind)));
              return;
            }
            serve_once(req, std::move(r), std::move(who));
          },
          [=](caf::error& err) { answer_refusal(self, req, err); });
    },
  };
}

} // namespace ces
