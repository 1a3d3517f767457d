#include "actors/http_bridge.hpp"
#include "actors/journal.hpp"
#include "api/server.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <map>

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
    [](atom::retry, const dlq_retry_request& r,
       const requester&) -> caf::result<dlq_retry_result> {
      return caf::make_error(errc::not_found,
                             "no DLQ entry " + std::to_string(r.id));
    },
    [](atom::discard, int64_t, const std::string&, const requester&)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      return caf::make_error(errc::not_found, "no DLQ entry");
    },
    [](atom::purge, const std::string&, const std::string&,
       const requester&) { return int64_t{0}; },
    [](atom::internal, atom::retry) {},
    [](atom::internal, atom::poll) {},
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
  // An event whose partition retention dropped: 404 with its own code.
  CHECK(http_error(event_gone(7)).first == 404);
  CHECK(std::string{http_error(event_gone(7)).second} == "gone");
}

namespace {

/// An IDEMPOTENCY actor in memory; what the bridge told it is in `log`.
struct idem_log {
  std::map<std::string, idempotent_answer> rows; // key -> answer/"pending"
  std::map<std::string, std::string> fingerprints;
  std::vector<std::string> calls; // "complete K 200", "release K"
  bool force_pending = false;
};

idempotency_actor::behavior_type
fake_idempotency(idempotency_actor::pointer, std::shared_ptr<idem_log> lg) {
  return {
    [=](atom::claim, const std::string& principal, const std::string& key,
        const std::string& fingerprint) {
      auto k = principal + "/" + key;
      idempotent_answer a;
      if (lg->force_pending) {
        a.state = "pending";
        a.retry_after_s = 3;
        return a;
      }
      auto i = lg->rows.find(k);
      if (i == lg->rows.end()) {
        lg->rows[k].state = "pending";
        lg->fingerprints[k] = fingerprint;
        a.state = "new";
      } else if (lg->fingerprints[k] != fingerprint) {
        a.state = "mismatch";
      } else {
        a = i->second;
        if (a.state == "pending")
          a.retry_after_s = 2;
      }
      return a;
    },
    [=](atom::complete, const std::string& principal, const std::string& key,
        idempotent_answer& a) {
      lg->calls.push_back("complete " + key + " "
                          + std::to_string(a.status));
      lg->rows[principal + "/" + key] = a;
    },
    [=](atom::release, const std::string& principal, const std::string& key) {
      lg->calls.push_back("release " + key);
      lg->rows.erase(principal + "/" + key);
    },
    [](atom::internal, atom::flush) {},
  };
}

struct keyed_answer {
  int status = 0;
  std::string body;
  api::header_list headers;
};

struct idempotent_bridge_fixture : bridge_fixture {
  std::shared_ptr<idem_log> lg = std::make_shared<idem_log>();

  void start_keyed(bool with_actor = true) {
    http_bridge_peers peers{sys.spawn(fake_journal, sc), sys.spawn(fake_dlq),
                            sys.spawn(fake_replayer, sc),
                            sys.spawn(fake_supervisor, true), probe};
    if (with_actor)
      peers.idempotency = sys.spawn(fake_idempotency, lg);
    http_bridge_settings cfg;
    cfg.serve_without_auth = true;
    cfg.replay_timeout = 2s;
    bridge = sys.spawn(http_bridge, peers, cfg);
    sched.run();
  }

  /// POST /replay/{id} with Idempotency-Key `key`; the answer as it went
  /// out, headers included.
  keyed_answer replay(int64_t id, const std::string& key,
                      bool run_to_end = true) {
    auto got = std::make_shared<keyed_answer>();
    api::parsed_request r;
    r.kind = api::route_kind::replay;
    r.id = id;
    api::request_meta m;
    m.idempotency_key = key;
    auto req = api::make_detached_request(
      r, [](int, std::string) {}, m);
    // Sees the answers the bridge does not observe itself (done, pending,
    // mismatch); a "new" claim's own observer replaces it.
    req->on_answer([got](int status, const std::string& body,
                         const api::header_list& hs) {
      got->status = status;
      got->body = body;
      got->headers = hs;
    });
    last = req;
    self->send(bridge, std::move(req), r);
    if (run_to_end)
      sched.run();
    return *got;
  }

  std::shared_ptr<api::pending_request> last;
};

std::string header_of(const api::header_list& hs, const std::string& name) {
  for (auto& [k, v] : hs)
    if (k == name)
      return v;
  return {};
}

} // namespace

TEST_CASE_METHOD(idempotent_bridge_fixture,
                 "Idempotency-Key: the first answer is stored and replayed") {
  start_keyed();
  replay(7, "k1");
  CHECK(last->answered());
  CHECK(sc->replayed == std::vector<int64_t>{7});
  REQUIRE(lg->calls == std::vector<std::string>{"complete k1 200"});
  auto first_body = lg->rows["none:anonymous/k1"].body;
  CHECK(nlohmann::json::parse(first_body)["status"] == "replayed");
  // The retry: the stored answer, marked; nothing replayed again.
  auto again = replay(7, "k1");
  CHECK(again.status == 200);
  CHECK(again.body == first_body);
  CHECK(header_of(again.headers, "Idempotent-Replayed") == "true");
  CHECK(sc->replayed == std::vector<int64_t>{7});
  // The same key for another event: 422.
  auto other = replay(8, "k1");
  CHECK(other.status == 422);
  CHECK(nlohmann::json::parse(other.body)["error"]
        == "idempotency_key_reused");
  CHECK(sc->replayed == std::vector<int64_t>{7});
  // A final error (404) is stored too.
  sc->replay_missing = true;
  replay(9, "k2");
  CHECK(lg->calls.back() == "complete k2 404");
  // While the first request runs: 409 with Retry-After.
  lg->force_pending = true;
  auto busy = replay(7, "k3");
  CHECK(busy.status == 409);
  CHECK(nlohmann::json::parse(busy.body)["error"]
        == "idempotency_in_progress");
  CHECK(header_of(busy.headers, "Retry-After") == "3");
}

TEST_CASE_METHOD(idempotent_bridge_fixture,
                 "Idempotency-Key: released when nothing definite happened, "
                 "kept when the outcome is unknown") {
  start_keyed();
  sc->replay_timeout = true; // 503 broker_timeout
  replay(7, "k1");
  CHECK(lg->calls == std::vector<std::string>{"release k1"});
  // Free again: the retry runs.
  sc->replay_timeout = false;
  replay(7, "k1");
  CHECK(lg->calls.back() == "complete k1 200");
  CHECK(sc->replayed == std::vector<int64_t>{7});
  // The replayer does not answer in time: 503 upstream_timeout, the claim
  // stays pending (a retry gets 409 until it expires).
  sc->silent_replayer = true;
  replay(7, "k2", false);
  sched.run();
  advance_time(2s);
  sched.run();
  REQUIRE(last->answered());
  CHECK(lg->calls.size() == 2);
  CHECK(lg->rows["none:anonymous/k2"].state == "pending");
  auto retry = replay(7, "k2");
  CHECK(retry.status == 409);
}

TEST_CASE_METHOD(idempotent_bridge_fixture,
                 "Idempotency-Key without an IDEMPOTENCY actor is 503") {
  start_keyed(false);
  auto r = replay(7, "k1");
  CHECK(r.status == 503);
  CHECK(sc->replayed.empty());
  // Without the header the route works as before.
  CHECK(ask(api::route_kind::replay, 7).status == 200);
}
