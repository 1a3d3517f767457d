// Start-up wiring: how the SUPERVISOR spawns each of the service's actors
// from the settings (as vast's spawn_*.cpp), in start order. main.cpp only
// runs the supervisor with these specs.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/supervisor.hpp"

#include <functional>
#include <string>
#include <vector>

namespace ces {

struct settings;
class metrics;

/// Told the handle of every newly started HTTP_BRIDGE (the HTTP server's
/// threads hand their requests to the current one).
using bridge_listener = std::function<void(http_bridge_actor)>;

/// The supervised actors, in start order (they stop in reverse order):
/// persister-0 .. persister-N-1 (one PostgreSQL connection each), dlq,
/// journal, replayer, consumer (depends on the persisters), auth, admin,
/// jobs, idempotency, maintenance, dlq_alerts (only when dlq-webhook-url is
/// set) and http_bridge (depends on dlq, journal, replayer, auth, admin, jobs
/// and idempotency).
std::vector<child_spec> child_specs(const settings& s, metrics* m,
                                    bridge_listener on_bridge);

/// The children's names, in start order (e.g. for metrics series).
std::vector<std::string> child_names(const std::vector<child_spec>& specs);

} // namespace ces
