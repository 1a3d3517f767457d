// main() for actor-protocol tests: Catch2 test cases that use CAF's
// deterministic test_coordinator_fixture. CAF's dsl (expect, allow, ...)
// reports to CAF's own test engine, so the whole Catch2 session runs inside a
// single CAF test: a failed `expect` aborts with CAF's file:line report, a
// failed REQUIRE/CHECK is reported by Catch2, and either fails the binary.
#define CAF_SUITE actors
#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

namespace {
int g_argc = 0;
char** g_argv = nullptr;
int g_catch_result = 1;
} // namespace

CAF_TEST(catch2_session) {
  g_catch_result = Catch::Session().run(g_argc, g_argv);
  CAF_CHECK_EQUAL(g_catch_result, 0);
}

int main(int argc, char** argv) {
  g_argc = argc;
  g_argv = argv;
  caf::test::engine::max_runtime(0); // ctest's timeout applies instead
  auto ok = caf::test::engine::run(false, "", 1, 0, ".*", "", ".*", "");
  return ok && g_catch_result == 0 ? 0 : 1;
}
