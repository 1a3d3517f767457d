// SUPERVISOR: starts the service's actors, restarts crashed ones with
// exponential backoff (rest-for-one: a child's dependants restart with it),
// and gives up — quits with errc::restart_budget_exhausted — after too many
// restarts within a window, so the orchestrator can take over.
#pragma once

#include "actors/interfaces.hpp"

#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ces {

/// Current handles of the started children, by name.
using peer_map = std::map<std::string, caf::actor>;

/// How the SUPERVISOR starts one child.
struct child_spec {
  std::string name;
  /// Children whose handle this child holds. When one of them restarts, this
  /// child is stopped and restarted after it. Must name earlier children.
  std::vector<std::string> depends_on;
  /// Spawns the child; `peers` holds the handles of its dependencies.
  std::function<caf::actor(caf::local_actor* self, const peer_map& peers)>
    start;
};

struct supervision_policy {
  caf::timespan backoff_initial = std::chrono::milliseconds(200);
  caf::timespan backoff_max = std::chrono::seconds(10);
  /// More restarts than this within `window` ends supervision.
  size_t max_restarts = 10;
  caf::timespan window = std::chrono::seconds(60);
  /// How long a child may take to stop during shutdown before it is killed;
  /// then the SUPERVISOR quits with errc::shutdown_forced, not normally.
  caf::timespan stop_timeout = std::chrono::seconds(10);
};

/// Called once per restarted child (crashed or dependant), e.g. to count it in
/// crm_actor_restarts_total{actor}; also (as `on_crash`) once per child that
/// ended unasked, restarted or not, for crm_actor_crashes_total{actor}.
using restart_hook = std::function<void(const std::string& actor)>;

struct supervised_child {
  child_spec spec;
  caf::actor hdl;
  std::string state = "starting"; // running | restarting | stopping | stopped
  uint32_t restarts = 0;          // total restarts of this child
  uint32_t attempt = 0;           // consecutive failures (reset when stable)
  caf::actor_clock::time_point started_at;
  std::string last_failure;
};

struct supervisor_state {
  std::vector<supervised_child> children; // in start order
  std::deque<caf::actor_clock::time_point> recent_restarts;
  bool shutting_down = false;
  size_t stop_cursor = 0; // children[0, stop_cursor) remain to be stopped
  /// Children that had to be killed because they outlived their stop
  /// timeout: the shutdown was not clean.
  std::vector<std::string> forced;
  static inline const char* name = "supervisor";
};

/// Backoff before restart number `attempt` (1-based): initial * 2^(attempt-1),
/// capped at the policy's maximum.
caf::timespan restart_backoff(const supervision_policy& policy,
                              uint32_t attempt);

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           std::vector<child_spec> specs, supervision_policy policy,
           restart_hook on_restart, restart_hook on_crash);

} // namespace ces
