#include "actors/http_bridge.hpp"

#include "actors/pg_probe.hpp"
#include "api/json.hpp"
#include "api/server.hpp"

namespace ces {

namespace {

using self_ptr = http_bridge_actor::stateful_pointer<http_bridge_state>;
using request_ptr = std::shared_ptr<api::pending_request>;

void answer_error(self_ptr self, const request_ptr& req,
                  const caf::error& err) {
  auto [status, code] = http_error(err);
  req->respond(status, api::error_json(code, error_message(self->system(), err)));
}

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
      default:
        break;
    }
  }
  if (err == caf::sec::request_timeout)
    return {503, "upstream_timeout"};
  // The actor that should answer died (it is being restarted).
  return {503, "unavailable"};
}

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
  // Until the AUTH wiring passes the principal's scope: every tenant.
  tenant_scope everything;
  everything.all = true;
  everything.unknown_tenant = true;
  requester anyone;
  anyone.principal = "anonymous";
  anyone.scope = everything;
  return {
    [=](request_ptr& req, api::parsed_request& r) {
      auto fail = [=](caf::error& err) { answer_error(self, req, err); };
      switch (r.kind) {
        case api::route_kind::health:
          req->respond(200, api::health_json());
          return;
        case api::route_kind::ready:
          ready(self, peers, cfg, req);
          return;
        case api::route_kind::events_latest:
          self
            ->request(peers.journal, cfg.read_timeout, atom::latest_v, r.limit,
                      everything, read_deadline())
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
          self
            ->request(peers.journal, cfg.read_timeout, atom::get_v, r.id,
                      everything, read_deadline())
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
                      anyone)
            .then(
              [=](replay_result& x) {
                req->respond(200,
                             api::replay_json(x.event_id, x.topic, x.partition,
                                              x.offset, x.replay_id));
              },
              fail);
          return;
        case api::route_kind::dlq_latest:
          self
            ->request(peers.dlq, cfg.read_timeout, atom::latest_v, r.limit,
                      everything)
            .then(
              [=](std::vector<storage::dlq_entry_row>& xs) {
                req->respond(200, api::dlq_json(xs));
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
        case api::route_kind::debug_fail:
          self
            ->request(peers.supervisor, cfg.read_timeout, atom::fail_v, r.name)
            .then(
              [=](bool done) {
                if (done)
                  req->respond(202, "{\"status\":\"failure injected\",\"actor\":\""
                                      + r.name + "\"}");
                else
                  req->respond(404, api::error_json(
                                      "not_found",
                                      "no running actor " + r.name));
              },
              fail);
          return;
        case api::route_kind::unmatched:
          break;
      }
      req->respond(404, api::error_json("not_found", "no such route"));
    },
  };
}

} // namespace ces
