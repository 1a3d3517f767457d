#include "actors/supervisor.hpp"
#include "fixture.hpp"

#include <catch2/catch.hpp>

#include <memory>

using namespace std::chrono_literals;
using namespace ces;

namespace {

using journal = std::shared_ptr<std::vector<std::string>>;

/// A child that crashes on any int32_t and records its termination.
caf::behavior flaky(caf::event_based_actor* self, std::string name,
                    journal exits) {
  self->attach_functor([=](const caf::error&) { exits->push_back(name); });
  return {
    [=](int32_t) { self->quit(caf::sec::runtime_error); },
  };
}

struct supervisor_fixture : ces::test::fixture {
  journal exits = std::make_shared<std::vector<std::string>>();
  std::map<std::string, int> restart_counts;
  std::map<std::string, int> crash_counts;
  /// The peers each start of "b" received.
  std::vector<caf::actor> b_saw_a;

  child_spec spec(std::string name, std::vector<std::string> deps = {}) {
    auto ex = exits;
    auto saw = &b_saw_a;
    return child_spec{name, deps,
                      [=](caf::local_actor* self, const peer_map& peers) {
                        if (auto i = peers.find("a"); i != peers.end())
                          saw->push_back(i->second);
                        return self->spawn(flaky, name, ex);
                      }};
  }

  caf::actor start(std::vector<child_spec> specs, supervision_policy p) {
    auto sup = sys.spawn(
      supervisor, std::move(specs), p,
      [this](const std::string& a) { ++restart_counts[a]; },
      [this](const std::string& a) { ++crash_counts[a]; });
    sched.run();
    return caf::actor_cast<caf::actor>(sup);
  }

  supervisor_state& state_of(const caf::actor& sup) {
    return deref<supervisor_actor::stateful_base<supervisor_state>>(sup).state;
  }

  supervised_child& child(const caf::actor& sup, const std::string& name) {
    for (auto& c : state_of(sup).children)
      if (c.spec.name == name)
        return c;
    FAIL("no child " << name);
    throw std::logic_error("unreachable");
  }

  void crash(const caf::actor& sup, const std::string& name) {
    auto victim = child(sup, name).hdl;
    REQUIRE(victim);
    self->send(victim, int32_t{1});
    sched.run();
  }

  static supervision_policy policy() {
    supervision_policy p;
    p.backoff_initial = 100ms;
    p.backoff_max = 400ms;
    p.max_restarts = 3;
    p.window = 60s;
    return p;
  }
};

} // namespace

TEST_CASE("restart backoff doubles per attempt and is capped") {
  auto p = supervision_policy{};
  p.backoff_initial = 100ms;
  p.backoff_max = 1s;
  CHECK(restart_backoff(p, 1) == caf::timespan{100ms});
  CHECK(restart_backoff(p, 2) == caf::timespan{200ms});
  CHECK(restart_backoff(p, 4) == caf::timespan{800ms});
  CHECK(restart_backoff(p, 5) == caf::timespan{1s});
  CHECK(restart_backoff(p, 40) == caf::timespan{1s});
}

TEST_CASE_METHOD(supervisor_fixture,
                 "a crashed child is restarted after its backoff") {
  auto sup = start({spec("a")}, policy());
  auto first = child(sup, "a").hdl;
  crash(sup, "a");
  CHECK(child(sup, "a").state == "restarting");
  CHECK(!child(sup, "a").hdl);
  // Not before the backoff has passed ...
  advance_time(99ms);
  sched.run();
  CHECK(!child(sup, "a").hdl);
  CHECK(restart_counts["a"] == 0);
  // ... but right after it.
  advance_time(1ms);
  sched.run();
  auto second = child(sup, "a").hdl;
  CHECK(second);
  CHECK(second != first);
  CHECK(child(sup, "a").state == "running");
  CHECK(child(sup, "a").restarts == 1);
  CHECK(child(sup, "a").last_failure.find("runtime_error")
        != std::string::npos);
  CHECK(restart_counts["a"] == 1);
  CHECK(crash_counts["a"] == 1);
  // A second consecutive crash waits twice as long.
  crash(sup, "a");
  advance_time(199ms);
  sched.run();
  CHECK(!child(sup, "a").hdl);
  advance_time(1ms);
  sched.run();
  CHECK(child(sup, "a").hdl);
  CHECK(child(sup, "a").attempt == 2);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "dependants restart with the child whose handle they hold") {
  auto sup = start({spec("a"), spec("b", {"a"}), spec("c")}, policy());
  REQUIRE(b_saw_a.size() == 1);
  auto c_before = child(sup, "c").hdl;
  crash(sup, "a");
  // b was stopped by the supervisor (it held a's handle); c was not touched.
  CHECK(!child(sup, "b").hdl);
  CHECK(child(sup, "c").hdl == c_before);
  CHECK(std::count(exits->begin(), exits->end(), "b") == 1);
  advance_time(100ms);
  sched.run();
  REQUIRE(child(sup, "a").hdl);
  REQUIRE(child(sup, "b").hdl);
  REQUIRE(b_saw_a.size() == 2);
  CHECK(b_saw_a.back() == child(sup, "a").hdl); // b got the new a
  CHECK(restart_counts["a"] == 1);
  CHECK(restart_counts["b"] == 1);
  CHECK(restart_counts["c"] == 0);
  CHECK(child(sup, "c").hdl == c_before);
  // A crash of the dependant alone restarts only the dependant.
  auto a_now = child(sup, "a").hdl;
  crash(sup, "b");
  advance_time(200ms);
  sched.run();
  CHECK(child(sup, "a").hdl == a_now);
  CHECK(restart_counts["b"] == 2);
  CHECK(restart_counts["a"] == 1);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "the supervisor gives up after its restart budget") {
  auto sup = start({spec("a"), spec("b")}, policy());
  self->monitor(sup);
  for (int i = 0; i < 3; ++i) {
    crash(sup, "a");
    advance_time(1s);
    sched.run();
    REQUIRE(child(sup, "a").hdl);
  }
  CHECK(restart_counts["a"] == 3);
  // The 4th failure within the window exceeds max_restarts = 3.
  crash(sup, "a");
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
  CHECK(reason == errc::restart_budget_exhausted);
  // All children were stopped with it, and nothing was restarted.
  sched.run();
  CHECK(std::count(exits->begin(), exits->end(), "b") == 1);
  CHECK(restart_counts["a"] == 3);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "failures older than the window do not count") {
  auto sup = start({spec("a")}, policy());
  self->monitor(sup);
  for (int i = 0; i < 6; ++i) {
    crash(sup, "a");
    // Stable for longer than the window after each restart: the failure
    // leaves the window, and the backoff starts over.
    CHECK(child(sup, "a").attempt == 1);
    advance_time(100ms);
    sched.run();
    REQUIRE(child(sup, "a").hdl);
    advance_time(61s);
  }
  CHECK(restart_counts["a"] == 6);
}

TEST_CASE_METHOD(supervisor_fixture,
                 "shutdown stops children in reverse start order") {
  auto sup = start({spec("a"), spec("b", {"a"}), spec("c")}, policy());
  self->monitor(sup);
  self->send(sup, atom::shutdown_v);
  sched.run();
  caf::error reason = caf::make_error(caf::sec::runtime_error);
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
  CHECK(!reason);
  CHECK(*exits == std::vector<std::string>{"c", "b", "a"});
  CHECK(restart_counts.empty());
}

namespace {

/// A child that ignores stop requests (a graceful stop that never ends).
caf::behavior stubborn(caf::event_based_actor* self, journal exits) {
  self->attach_functor([=](const caf::error&) { exits->push_back("stubborn"); });
  self->set_exit_handler([](caf::exit_msg&) {});
  return {[](int32_t) {}};
}

} // namespace

TEST_CASE_METHOD(supervisor_fixture,
                 "a child that does not stop in time is killed: unclean stop") {
  auto p = policy();
  p.stop_timeout = 2s;
  auto ex = exits;
  child_spec slow{"slow", {}, [ex](caf::local_actor* self, const peer_map&) {
                    return self->spawn(stubborn, ex);
                  }};
  auto sup = start({spec("a"), slow}, p);
  self->monitor(sup);
  self->send(sup, atom::shutdown_v);
  sched.run();
  CHECK(exits->empty()); // "slow" ignores the stop request
  advance_time(2s);
  sched.run();
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
  CHECK(reason == errc::shutdown_forced);
  CHECK(*exits == std::vector<std::string>{"stubborn", "a"});
}

namespace {

/// A child whose graceful stop takes a while (a CONSUMER draining its
/// batches): on user_shutdown it only starts stopping; an int32_t then ends
/// the drain.
caf::behavior draining(caf::event_based_actor* self, journal exits) {
  self->attach_functor(
    [=](const caf::error&) { exits->push_back("draining"); });
  self->set_exit_handler([=](caf::exit_msg& msg) {
    if (msg.reason != caf::exit_reason::user_shutdown)
      self->quit(msg.reason);
  });
  return {[=](int32_t) { self->quit(caf::exit_reason::user_shutdown); }};
}

} // namespace

TEST_CASE_METHOD(supervisor_fixture,
                 "a crash during the ordered shutdown does not stop the "
                 "remaining children early") {
  auto p = policy();
  p.stop_timeout = 10s;
  auto ex = exits;
  child_spec slow{"draining",
                  {"a"},
                  [ex](caf::local_actor* self, const peer_map&) {
                    return self->spawn(draining, ex);
                  }};
  auto sup = start({spec("a"), spec("b"), slow}, p);
  self->monitor(sup);
  self->send(sup, atom::shutdown_v);
  sched.run();
  // "draining" is being stopped (it is last in start order) and drains.
  CHECK(exits->empty());
  CHECK(child(sup, "draining").state == "stopping");
  // "a" crashes meanwhile: logged, not restarted, and the shutdown sequence
  // stays with "draining": "b" keeps running.
  crash(sup, "a");
  CHECK(*exits == std::vector<std::string>{"a"});
  CHECK(child(sup, "b").hdl);
  CHECK(child(sup, "b").state == "running");
  CHECK(child(sup, "draining").state == "stopping");
  CHECK(child(sup, "a").last_failure.find("runtime_error")
        != std::string::npos);
  CHECK(crash_counts["a"] == 1);
  advance_time(1s);
  sched.run();
  CHECK(!child(sup, "a").hdl); // not restarted
  CHECK(child(sup, "b").hdl);
  // The drain ends: then "b" stops, and the supervisor quits.
  self->send(child(sup, "draining").hdl, int32_t{1});
  sched.run();
  CHECK(*exits == std::vector<std::string>{"a", "draining", "b"});
  caf::error reason = caf::make_error(caf::sec::runtime_error);
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(!reason);
  CHECK(restart_counts.empty());
}
