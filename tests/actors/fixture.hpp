// Shared fixture for actor-protocol tests: CAF's test_coordinator_fixture
// with the service's message types.
#pragma once

#include "actors/interfaces.hpp"

#include <caf/test/dsl.hpp>

namespace ces::test {

struct config : caf::actor_system_config {
  config() {
    add_message_types<caf::id_block::ces>();
    add_message_types<caf::id_block::ces_actors>();
    add_error_category(caf::atom("ces"), render_errc);
  }
};

using fixture = test_coordinator_fixture<config>;

} // namespace ces::test
