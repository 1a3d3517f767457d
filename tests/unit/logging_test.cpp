// ces::log: text and JSON lines, escaping, levels, threads. Output is
// captured with ces::log::redirect.
#include "config/logging.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <cmath>
#include <limits>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using ces::log::field;
using nlohmann::json;

namespace {

/// Captures everything logged while alive, in the given format and level.
struct capture {
  std::ostringstream os;

  capture(const std::string& format, const std::string& level = "trace") {
    ces::log::init(format, level);
    ces::log::redirect(&os);
  }

  ~capture() {
    ces::log::redirect(nullptr);
    ces::log::init("text", "info");
  }

  std::vector<std::string> lines() const {
    std::vector<std::string> result;
    std::istringstream in{os.str()};
    for (std::string l; std::getline(in, l);)
      result.push_back(l);
    return result;
  }

  /// The only line, parsed; fails unless exactly one line was logged.
  json only_json() const {
    auto ls = lines();
    REQUIRE(ls.size() == 1);
    REQUIRE(os.str().back() == '\n');
    return json::parse(ls[0]); // throws on invalid JSON or invalid UTF-8
  }
};

const std::string ts_regex = R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)";

// Nasty input: quotes, backslash, newline, tab, CR, other control
// characters, DEL, valid multi-byte UTF-8, and invalid UTF-8 (a lone
// continuation byte, 0xFF, a truncated sequence, an overlong encoding, a
// surrogate).
const std::string nasty = "a\"b\\c\nd\te\rf\x01g\x1fh\x7fi \xe2\x82\xac "
                          "\xf0\x9f\x98\x80 \x80 \xff \xe2\x82 \xc0\xaf "
                          "\xed\xa0\x80 end";
// What JSON decoding must give back: invalid bytes as U+FFFD, one each.
const std::string nasty_decoded
  = "a\"b\\c\nd\te\rf\x01g\x1fh\x7fi \xe2\x82\xac \xf0\x9f\x98\x80 "
    "\xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
    "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd end";

} // namespace

TEST_CASE("text: structured event", "[logging]") {
  capture cap{"text"};
  ces::log::event(spdlog::level::info, "supervisor", "actor_restart",
                  {{"actor", "persister"},
                   {"reason", "connection lost: \"db\" down"},
                   {"attempt", 2},
                   {"backoff_ms", 400}});
  auto ls = cap.lines();
  REQUIRE(ls.size() == 1);
  CHECK(std::regex_match(
    ls[0],
    std::regex{ts_regex
               + R"( INFO  supervisor: actor_restart actor=persister )"
                 R"(reason="connection lost: \\"db\\" down" attempt=2 )"
                 R"(backoff_ms=400)"}));
}

TEST_CASE("text: levels, value types and quoting", "[logging]") {
  capture cap{"text"};
  ces::log::event(spdlog::level::warn, "x", "e",
                  {{"empty", ""},
                   {"eq", "a=b"},
                   {"neg", -7},
                   {"big", uint64_t{18446744073709551615u}},
                   {"real", 0.25},
                   {"flag", true},
                   {"utf8", "gr\xc3\xbc\xc3\x9f"}});
  ces::log::event(spdlog::level::err, "x", "e2", {});
  ces::log::get("x")->critical("c");
  ces::log::get("x")->debug("d");
  ces::log::get("x")->trace("t");
  auto ls = cap.lines();
  REQUIRE(ls.size() == 5);
  CHECK_THAT(ls[0],
             Catch::EndsWith(" WARN  x: e empty=\"\" eq=\"a=b\" neg=-7 "
                             "big=18446744073709551615 real=0.25 flag=true "
                             "utf8=gr\xc3\xbc\xc3\x9f"));
  CHECK_THAT(ls[1], Catch::EndsWith(" ERROR x: e2"));
  CHECK_THAT(ls[2], Catch::EndsWith(" CRIT  x: c"));
  CHECK_THAT(ls[3], Catch::EndsWith(" DEBUG x: d"));
  CHECK_THAT(ls[4], Catch::EndsWith(" TRACE x: t"));
}

TEST_CASE("text: one line per record whatever the content", "[logging]") {
  capture cap{"text"};
  ces::log::get("plain")->info("first\nsecond\x01{}", 3);
  ces::log::event(spdlog::level::info, "plain", "ev\nil",
                  {{"k e=y\n", nasty}});
  auto ls = cap.lines();
  REQUIRE(ls.size() == 2);
  CHECK_THAT(ls[0], Catch::EndsWith(" INFO  plain: first\\nsecond\\u00013"));
  CHECK_THAT(ls[1],
             Catch::EndsWith(
               " INFO  plain: ev\\nil k_e_y\\n=\"a\\\"b\\\\c\\nd\\te\\rf"
               "\\u0001g\\u001fh\\u007fi \xe2\x82\xac \xf0\x9f\x98\x80 "
               "\xef\xbf\xbd \xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd "
               "\xef\xbf\xbd\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd "
               "end\""));
}

TEST_CASE("json: structured event", "[logging]") {
  capture cap{"json"};
  ces::log::event(spdlog::level::info, "supervisor", "actor_restart",
                  {{"actor", "persister"},
                   {"reason", "boom"},
                   {"attempt", 2},
                   {"backoff_ms", 400}});
  auto ls = cap.lines();
  REQUIRE(ls.size() == 1);
  CHECK(std::regex_match(
    ls[0], std::regex{R"(\{"ts":")" + ts_regex
                      + R"(","level":"info","logger":"supervisor",)"
                        R"("event":"actor_restart","actor":"persister",)"
                        R"("reason":"boom","attempt":2,"backoff_ms":400\})"}));
  auto j = cap.only_json();
  CHECK(j.size() == 8);
  CHECK(j["attempt"].is_number_integer());
}

TEST_CASE("json: plain message", "[logging]") {
  capture cap{"json"};
  ces::log::get("persister")->warn("batch of {} records failed: {}", 12,
                                   "timeout");
  auto j = cap.only_json();
  CHECK(j.size() == 4);
  CHECK(j["level"] == "warn");
  CHECK(j["logger"] == "persister");
  CHECK(j["msg"] == "batch of 12 records failed: timeout");
  CHECK(std::regex_match(j["ts"].get<std::string>(), std::regex{ts_regex}));
}

TEST_CASE("json: escaping of messages, events, keys and logger names",
          "[logging]") {
  SECTION("plain message") {
    capture cap{"json"};
    ces::log::get("esc")->info(nasty);
    auto j = cap.only_json();
    CHECK(j["msg"].get<std::string>() == nasty_decoded);
  }
  SECTION("event fields") {
    capture cap{"json"};
    ces::log::event(spdlog::level::err, "log\"ger\n", "ev\"ent",
                    {{"val", nasty}, {"k\"ey\\", 1}});
    auto j = cap.only_json();
    CHECK(j["level"] == "error");
    CHECK(j["logger"] == "log\"ger\n");
    CHECK(j["event"] == "ev\"ent");
    CHECK(j["val"].get<std::string>() == nasty_decoded);
    CHECK(j["k\"ey\\"] == 1);
  }
}

TEST_CASE("json: value types", "[logging]") {
  capture cap{"json"};
  ces::log::event(spdlog::level::debug, "types", "t",
                  {{"i", -42},
                   {"i64", int64_t{-9223372036854775807LL - 1}},
                   {"u64", uint64_t{18446744073709551615u}},
                   {"sz", size_t{7}},
                   {"d", 1.5},
                   {"f", 0.1f},
                   {"nan", std::nan("")},
                   {"inf", std::numeric_limits<double>::infinity()},
                   {"yes", true},
                   {"no", false},
                   {"str", std::string{"s"}},
                   {"sv", std::string_view{"v"}}});
  auto j = cap.only_json();
  CHECK(j["level"] == "debug");
  CHECK(j["i"] == -42);
  CHECK(j["i64"] == std::numeric_limits<int64_t>::min());
  CHECK(j["u64"] == std::numeric_limits<uint64_t>::max());
  CHECK(j["sz"] == 7);
  CHECK(j["d"] == 1.5);
  CHECK(j["f"].get<double>() == Approx(0.1));
  CHECK(j["nan"].is_null());
  CHECK(j["inf"].is_null());
  CHECK(j["yes"] == true);
  CHECK(j["no"] == false);
  CHECK(j["str"] == "s");
  CHECK(j["sv"] == "v");
}

TEST_CASE("json: field keys never clash with the envelope", "[logging]") {
  capture cap{"json"};
  ces::log::event(spdlog::level::info, "clash", "e",
                  {{"level", "x"}, {"ts", 1}, {"msg", "m"}, {"event", "y"},
                   {"logger", "z"}});
  auto j = cap.only_json();
  CHECK(j["level"] == "info");
  CHECK(j["logger"] == "clash");
  CHECK(j["event"] == "e");
  CHECK(j["_level"] == "x");
  CHECK(j["_ts"] == 1);
  CHECK(j["_msg"] == "m");
  CHECK(j["_event"] == "y");
  CHECK(j["_logger"] == "z");
}

TEST_CASE("levels filter events and messages", "[logging]") {
  capture cap{"json", "warn"};
  auto lg = ces::log::get("lvl");
  lg->info("dropped");
  ces::log::event(spdlog::level::info, *lg, "dropped", {});
  lg->warn("kept");
  ces::log::event(spdlog::level::err, *lg, "kept", {});
  auto ls = cap.lines();
  REQUIRE(ls.size() == 2);
  CHECK(json::parse(ls[0])["msg"] == "kept");
  CHECK(json::parse(ls[1])["event"] == "kept");
  // Loggers created after init() get the level too.
  ces::log::get("lvl-new")->info("dropped");
  CHECK(cap.lines().size() == 2);
}

TEST_CASE("init rejects unknown formats and levels", "[logging]") {
  CHECK_THROWS_AS(ces::log::init("xml", "info"), std::invalid_argument);
  CHECK_THROWS_AS(ces::log::init("text", "loud"), std::invalid_argument);
  CHECK_NOTHROW(ces::log::init("text", "warning"));
  CHECK_NOTHROW(ces::log::init("json", "off"));
  CHECK_NOTHROW(ces::log::init("text", "info"));
}

TEST_CASE("loggers are shared and registered with spdlog", "[logging]") {
  auto a = ces::log::get("shared");
  CHECK(a == ces::log::get("shared"));
  CHECK(spdlog::get("shared") == a);
  capture cap{"json"};
  spdlog::info("via the default logger");
  auto j = cap.only_json();
  CHECK(j["logger"] == "main");
  CHECK(j["msg"] == "via the default logger");
}

TEST_CASE("many threads produce whole, valid lines", "[logging]") {
  capture cap{"json", "info"};
  constexpr int threads = 8;
  constexpr int per_thread = 500;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([t] {
      auto lg = ces::log::get("worker-" + std::to_string(t % 3));
      for (int i = 0; i < per_thread; ++i) {
        if (i % 2 == 0)
          ces::log::event(spdlog::level::info, *lg, "tick",
                          {{"thread", t}, {"i", i}, {"pad", nasty}});
        else
          lg->info("message {} from {}", i, t);
      }
    });
  for (auto& t : ts)
    t.join();
  auto ls = cap.lines();
  REQUIRE(ls.size() == threads * per_thread);
  std::vector<int> events(threads, 0);
  std::vector<int> messages(threads, 0);
  for (auto& l : ls) {
    auto j = json::parse(l);
    if (j.contains("event")) {
      CHECK(j["pad"].get<std::string>() == nasty_decoded);
      events[j["thread"].get<int>()]++;
    } else {
      std::smatch m;
      auto msg = j["msg"].get<std::string>();
      REQUIRE(std::regex_match(msg, m, std::regex{R"(message \d+ from (\d))"}));
      messages[std::stoi(m[1])]++;
    }
  }
  for (int t = 0; t < threads; ++t) {
    CHECK(events[t] == per_thread / 2);
    CHECK(messages[t] == per_thread / 2);
  }
}

TEST_CASE("fields built at run time", "[logging]") {
  capture cap{"json"};
  std::vector<std::pair<std::string, std::string>> pairs = {
    {"kafka-topics", "a,b"}, {"database-url", "postgresql://u:***@h/db"}};
  std::vector<field> fields;
  for (auto& [k, v] : pairs)
    fields.emplace_back(k, v);
  fields.emplace_back("pid", 42);
  ces::log::event(spdlog::level::info, *ces::log::get("main"), "config",
                  fields);
  auto j = cap.only_json();
  CHECK(j["event"] == "config");
  CHECK(j["kafka-topics"] == "a,b");
  CHECK(j["database-url"] == "postgresql://u:***@h/db");
  CHECK(j["pid"] == 42);
  CHECK(j.size() == 7);
}
