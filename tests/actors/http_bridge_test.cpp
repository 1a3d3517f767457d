#include "actors/http_bridge.hpp"
#include "actors/journal.hpp"
#include "api/server.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

using namespace std::chrono_literals;
using namespace ces;

namespace {

struct answer {
  int status = 0;
  std::string body;
  nlohmann::json json() const {
    return nlohmann::json::parse(body);
  }
};

tenant_scope all_tenants() {
  tenant_scope s;
  s.all = true;
  s.unknown_tenant = true;
  return s;
}

/// Scripted peers: what each one answers.
struct script {
  bool db_up = true;
  bool broker_up = true;
  bool replay_missing = false;
  bool replay_timeout = false;
  bool silent_replayer = false; // never answers
  std::vector<int64_t> replayed;
};

journal_actor::behavior_type fake_journal(journal_actor::pointer,
                                          std::shared_ptr<script> sc) {
  auto event = [](int64_t id) {
    storage::journal_event e;
    e.id = id;
    e.tenant_id = "t";
    e.topic = "apexflow.jobs.created";
    e.payload_json = R"({"tenant_id": "t"})";
    e.received_at = "2026-11-27T12:00:00.000000Z";
    return e;
  };
  return {
    [=](atom::latest, int32_t limit, const tenant_scope&, caf::timestamp)
      -> caf::result<std::vector<storage::journal_event>, bool> {
      if (!sc->db_up)
        return caf::make_error(errc::db_unavailable, "connection refused");
      std::vector<storage::journal_event> xs;
      for (int32_t i = limit; i > 0; --i)
        xs.push_back(event(i));
      return {std::move(xs), limit > 3};
    },
    [=](atom::get, int64_t id, const tenant_scope&, caf::timestamp)
      -> std::vector<storage::journal_event> {
      if (id == 7)
        return {event(7)};
      return {};
    },
    [=](atom::find, const event_filter&, const tenant_scope&, int32_t limit,
        int64_t, caf::timestamp)
      -> caf::result<std::vector<storage::journal_event>, bool> {
      std::vector<storage::journal_event> xs;
      for (int32_t i = limit; i > 0; --i)
        xs.push_back(event(i));
      return {std::move(xs), false};
    },
    [=](atom::ping) -> caf::result<bool> {
      if (!sc->db_up)
        return caf::make_error(errc::db_unavailable, "connection refused");
      return true;
    },
  };
}

dlq_actor::behavior_type fake_dlq(dlq_actor::pointer) {
  return {
    [](atom::internal, atom::refresh) {},
    [](atom::status) { return int64_t{0}; },
    [](atom::latest, int32_t, const tenant_scope&) {
      return std::vector<storage::dlq_entry_row>{};
    },
    [](atom::find, const dlq_filter&, const tenant_scope&, int32_t, int64_t) {
      return std::vector<storage::dlq_entry_row>{};
    },
    [](atom::get, int64_t, const tenant_scope&) {
      return std::vector<storage::dlq_entry_row>{};
    },
  };
}

replayer_actor::behavior_type fake_replayer(replayer_actor::pointer self,
                                            std::shared_ptr<script> sc) {
  return {
    [=](atom::replay, int64_t id, const requester&)
      -> caf::result<replay_result> {
      if (sc->silent_replayer)
        return self->make_response_promise<replay_result>();
      if (sc->replay_missing)
        return caf::make_error(errc::not_found, "no journal event");
      if (sc->replay_timeout)
        return caf::make_error(errc::delivery_timeout, "_MSG_TIMED_OUT");
      sc->replayed.push_back(id);
      return replay_result{id, "apexflow.jobs.created", 3, 42, "r-1"};
    },
    [=](atom::ping) -> caf::result<bool> {
      if (!sc->broker_up)
        return caf::make_error(errc::broker_unavailable, "all brokers down");
      return true;
    },
    [](atom::internal, atom::poll) {},
  };
}

/// Answers `status` with two children, one of them restarting.
supervisor_actor::behavior_type fake_supervisor(supervisor_actor::pointer,
                                                bool all_running) {
  return {
    [](atom::internal, atom::respawn, const std::string&) {},
    [=](atom::status) {
      return std::vector<child_status>{
        {"persister", "running", 0, ""},
        {"consumer", all_running ? "running" : "restarting", 1,
         "kafka_fatal: boom"}};
    },
    [](atom::shutdown) {},
    [](atom::internal, atom::stop_next) {},
    [](atom::internal, atom::force_stop, const std::string&) {},
    [](atom::fail, const std::string& name) { return name == "consumer"; },
  };
}

/// A PG_PROBE that answers `up`.
pg_probe_actor::behavior_type fake_probe(pg_probe_actor::pointer, bool up) {
  return {
    [=](atom::ping) -> caf::result<bool> {
      if (!up)
        return caf::make_error(errc::db_unavailable, "probe: refused");
      return true;
    },
  };
}

struct bridge_fixture : ces::test::fixture {
  std::shared_ptr<script> sc = std::make_shared<script>();
  http_bridge_actor bridge;
  pg_probe_actor probe; // none: /ready asks the journal

  void start(bool all_running = true) {
    http_bridge_peers peers{sys.spawn(fake_journal, sc), sys.spawn(fake_dlq),
                            sys.spawn(fake_replayer, sc),
                            sys.spawn(fake_supervisor, all_running), probe};
    http_bridge_settings cfg;
    cfg.serve_without_auth = true; // no AUTH actor here
    cfg.replay_timeout = 2s;
    bridge = sys.spawn(http_bridge, peers, cfg);
    sched.run();
  }

  /// Sends one routed request through the bridge and runs until answered.
  answer ask(api::route_kind kind, int64_t id = 0, int32_t limit = 0,
             std::string name = {}) {
    auto got = std::make_shared<answer>();
    api::parsed_request r;
    r.kind = kind;
    r.id = id;
    r.limit = limit;
    r.name = std::move(name);
    auto req = api::make_detached_request(r, [got](int status, std::string b) {
      got->status = status;
      got->body = std::move(b);
    });
    self->send(bridge, std::move(req), r);
    sched.run();
    return *got;
  }
};

} // namespace

TEST_CASE_METHOD(bridge_fixture, "reads are answered from the journal") {
  start();
  auto latest = ask(api::route_kind::events_latest, 0, 3);
  CHECK(latest.status == 200);
  REQUIRE(latest.json().size() == 3);
  CHECK(latest.json()[0]["id"] == 3);
  auto one = ask(api::route_kind::event_by_id, 7);
  CHECK(one.status == 200);
  CHECK(one.json()["id"] == 7);
  auto none = ask(api::route_kind::event_by_id, 8);
  CHECK(none.status == 404);
  CHECK(none.json()["error"] == "not_found");
  CHECK(ask(api::route_kind::dlq_latest, 0, 10).body == "[]");
}

TEST_CASE_METHOD(bridge_fixture, "replay answers map to HTTP statuses") {
  start();
  auto ok = ask(api::route_kind::replay, 7);
  CHECK(ok.status == 200);
  CHECK(ok.json()["status"] == "replayed");
  CHECK(ok.json()["partition"] == 3);
  CHECK(ok.json()["offset"] == 42);
  CHECK(sc->replayed == std::vector<int64_t>{7});
  sc->replay_missing = true;
  auto missing = ask(api::route_kind::replay, 9);
  CHECK(missing.status == 404);
  CHECK(missing.json()["error"] == "not_found");
  CHECK(missing.json()["message"] == "no journal event");
  sc->replay_missing = false;
  sc->replay_timeout = true;
  auto slow = ask(api::route_kind::replay, 7);
  CHECK(slow.status == 503);
  CHECK(slow.json()["error"] == "broker_timeout");
}

TEST_CASE_METHOD(bridge_fixture,
                 "a replayer that never answers still gets the request answered") {
  start();
  sc->silent_replayer = true;
  auto got = std::make_shared<answer>();
  api::parsed_request r;
  r.kind = api::route_kind::replay;
  r.id = 7;
  self->send(bridge,
             api::make_detached_request(r,
                                        [got](int s, std::string b) {
                                          got->status = s;
                                          got->body = std::move(b);
                                        }),
             r);
  sched.run();
  CHECK(got->status == 0); // waiting
  advance_time(2s);        // the bridge's replay timeout
  sched.run();
  CHECK(got->status == 503);
  CHECK(nlohmann::json::parse(got->body)["error"] == "upstream_timeout");
}

TEST_CASE_METHOD(bridge_fixture, "readiness combines PostgreSQL, Kafka and actors") {
  SECTION("all up") {
    start();
    auto r = ask(api::route_kind::ready);
    CHECK(r.status == 200);
    CHECK(r.json()["status"] == "ready");
  }
  SECTION("database down") {
    start();
    sc->db_up = false;
    auto r = ask(api::route_kind::ready);
    CHECK(r.status == 503);
    CHECK(r.json()["failing"] == nlohmann::json::array({"postgres"}));
    CHECK(r.json()["checks"]["kafka"]["ok"] == true);
  }
  SECTION("broker down and an actor restarting") {
    start(false);
    sc->broker_up = false;
    auto r = ask(api::route_kind::ready);
    CHECK(r.status == 503);
    auto failing = r.json()["failing"];
    CHECK(std::find(failing.begin(), failing.end(), "kafka") != failing.end());
    CHECK(std::find(failing.begin(), failing.end(), "actor:consumer")
          != failing.end());
    CHECK(r.json()["checks"]["actor:consumer"]["detail"]
          == "restarting: kafka_fatal: boom");
  }
}

TEST_CASE_METHOD(bridge_fixture, "a read failure is a 503 with its reason") {
  start();
  sc->db_up = false;
  auto r = ask(api::route_kind::events_latest, 0, 5);
  CHECK(r.status == 503);
  CHECK(r.json()["error"] == "db_unavailable");
  CHECK(r.json()["message"] == "connection refused");
}

TEST_CASE_METHOD(bridge_fixture, "supervision state and fault injection") {
  start(false);
  auto sv = ask(api::route_kind::supervision);
  CHECK(sv.status == 200);
  auto actors = sv.json()["actors"];
  REQUIRE(actors.size() == 2);
  CHECK(actors[0]["name"] == "persister");
  CHECK(actors[0]["last_failure"].is_null());
  CHECK(actors[1]["state"] == "restarting");
  CHECK(actors[1]["restarts"] == 1);
  CHECK(actors[1]["last_failure"] == "kafka_fatal: boom");
  CHECK(ask(api::route_kind::debug_fail, 0, 0, "consumer").status == 202);
  // The fake supervisor says "journal" is not running.
  CHECK(ask(api::route_kind::debug_fail, 0, 0, "journal").status == 404);
}

TEST_CASE_METHOD(bridge_fixture,
                 "readiness asks the PG_PROBE, not the journal's mailbox") {
  SECTION("journal busy or failing, PostgreSQL up") {
    probe = sys.spawn(fake_probe, true);
    start();
    sc->db_up = false; // the journal would say db_unavailable
    auto r = ask(api::route_kind::ready);
    CHECK(r.status == 200);
    CHECK(r.json()["checks"]["postgres"]["ok"] == true);
  }
  SECTION("PostgreSQL down") {
    probe = sys.spawn(fake_probe, false);
    start();
    auto r = ask(api::route_kind::ready);
    CHECK(r.status == 503);
    CHECK(r.json()["checks"]["postgres"]["detail"] == "probe: refused");
  }
}

TEST_CASE_METHOD(ces::test::fixture,
                 "the journal answers expired reads without PostgreSQL") {
  storage::journal_reader_options opts;
  opts.statement_timeout_ms = 1000;
  // Nothing listens on port 1: a read that reaches PostgreSQL fails at once
  // with db_unavailable; an expired one must not get that far.
  auto j = sys.spawn(journal,
                     std::string{"postgresql://nobody@127.0.0.1:1/none"
                                 "?connect_timeout=2"},
                     opts);
  auto past = caf::make_timestamp() - std::chrono::seconds(1);
  auto future = caf::make_timestamp() + std::chrono::hours(1);
  auto error_of = [&](auto&& h) {
    caf::error got;
    sched.run();
    h.receive([](std::vector<storage::journal_event>&) { FAIL("answered"); },
              [&](caf::error& e) { got = std::move(e); });
    return got;
  };
  auto latest_error = [&](caf::timestamp deadline) {
    caf::error got;
    auto h = self->request(j, caf::infinite, atom::latest_v, int32_t{5},
                           all_tenants(), deadline);
    sched.run();
    h.receive(
      [](std::vector<storage::journal_event>&, bool) { FAIL("answered"); },
      [&](caf::error& e) { got = std::move(e); });
    return got;
  };
  CHECK(latest_error(past) == errc::expired);
  CHECK(error_of(self->request(j, caf::infinite, atom::get_v, int64_t{1},
                               all_tenants(), past))
        == errc::expired);
  CHECK(latest_error(future) == errc::db_unavailable);
  CHECK(error_of(self->request(j, caf::infinite, atom::get_v, int64_t{1},
                               all_tenants(), future))
        == errc::db_unavailable);
  // What an expired read answers over HTTP, should the bridge still wait.
  CHECK(http_error(caf::make_error(errc::expired)).first == 504);
}
