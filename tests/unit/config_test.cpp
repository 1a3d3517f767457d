// ces::service_config: flags, environment, INI file, precedence, help,
// validation and masking.
#include "config/config.hpp"
#include "config/mask.hpp"

#include <caf/actor_system.hpp>
#include <caf/scheduler/abstract_coordinator.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace {

const char* good_url = "postgresql://crm:s3cret@db.example:5432/crm";

/// Runs service_config::load on `args` with a fake environment.
struct run {
  std::map<std::string, std::string> env;
  ces::service_config cfg;
  ces::config_result result{false, -1};
  std::string out;
  std::string err;

  explicit run(std::vector<std::string> args,
               std::map<std::string, std::string> environment = {
                 {"DATABASE_URL", good_url}})
    : env(std::move(environment)) {
    args.insert(args.begin(), "crm-events-sink");
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    std::ostringstream o;
    std::ostringstream e;
    result = cfg.load(
      static_cast<int>(args.size()), argv.data(),
      [this](const char* name) -> const char* {
        auto i = env.find(name);
        return i == env.end() ? nullptr : i->second.c_str();
      },
      o, e);
    out = o.str();
    err = e.str();
  }

  const ces::settings& values() const {
    return cfg.values;
  }

  std::string get(const std::string& key) const {
    for (auto& [k, v] : ces::describe(cfg.values))
      if (k == key)
        return v;
    FAIL("no setting " << key);
    return {};
  }
};

/// A file that is removed at the end of the test.
struct temp_file {
  std::filesystem::path path;

  explicit temp_file(const std::string& content) {
    static std::atomic<int> counter{0};
    path = std::filesystem::temp_directory_path()
           / ("ces_config_test_" + std::to_string(::getpid()) + "_"
              + std::to_string(counter++) + ".ini");
    std::ofstream f{path};
    f << content;
  }

  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }

  std::string flag() const {
    return "--config-file=" + path.string();
  }
};

std::string line(const std::string& s) {
  return "crm-events-sink: " + s + "\n";
}

} // namespace

TEST_CASE("defaults apply when only DATABASE_URL is set", "[config]") {
  run r{{}};
  REQUIRE(r.err.empty());
  REQUIRE(r.result.proceed);
  ces::settings expected;
  expected.database_url = good_url;
  auto want = ces::describe(expected);
  CHECK(ces::describe(r.values()) == want);
  CHECK(r.values().kafka_topics
        == std::vector<std::string>{"apexflow.leads.created",
                                    "apexflow.jobs.created"});
  CHECK(r.values().http_port == 9106);
  CHECK(r.values().metrics_port == 9105);
}

TEST_CASE("environment names are the upper-case form of the flags",
          "[config]") {
  CHECK(ces::env_name("kafka-bootstrap-servers") == "KAFKA_BOOTSTRAP_SERVERS");
  CHECK(ces::env_name("database-url") == "DATABASE_URL");
  CHECK(ces::env_name("restart-window-s") == "RESTART_WINDOW_S");
  // Every setting is read from its variable.
  run r{{},
        {{"KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092"},
         {"KAFKA_TOPICS", "t1,t2"},
         {"KAFKA_GROUP_ID", "g"},
         {"KAFKA_PROPERTIES", "security.protocol=SSL"},
         {"KAFKA_SESSION_TIMEOUT_MS", "10000"},
         {"EMBEDDED_PARTITIONS", "3"},
         {"DATABASE_URL", "postgresql://u@h/db"},
         {"HTTP_ADDRESS", "127.0.0.1"},
         {"HTTP_PORT", "8080"},
         {"METRICS_ADDRESS", "127.0.0.2"},
         {"METRICS_PORT", "8081"},
         {"BATCH_MAX_RECORDS", "100"},
         {"BATCH_LINGER_MS", "0"},
         {"MAX_IN_FLIGHT_BATCHES", "4"},
         {"MAX_PAYLOAD_BYTES", "2048"},
         {"MAX_JSON_DEPTH", "64"},
         {"RESTART_BACKOFF_INITIAL_MS", "10"},
         {"RESTART_BACKOFF_MAX_MS", "20"},
         {"MAX_RESTARTS", "5"},
         {"RESTART_WINDOW_S", "30"},
         {"DB_RETRY_INITIAL_MS", "11"},
         {"DB_RETRY_MAX_MS", "22"},
         {"SHUTDOWN_TIMEOUT_MS", "3000"},
         {"LOG_FORMAT", "json"},
         {"LOG_LEVEL", "debug"}}};
  REQUIRE(r.err.empty());
  REQUIRE(r.result.proceed);
  auto& v = r.values();
  CHECK(v.kafka_bootstrap_servers == "k1:9092,k2:9092");
  CHECK(v.kafka_topics == std::vector<std::string>{"t1", "t2"});
  CHECK(v.kafka_group_id == "g");
  CHECK(v.kafka_properties == std::vector<std::string>{"security.protocol=SSL"});
  CHECK(v.kafka_session_timeout_ms == 10000);
  CHECK(v.embedded_partitions == 3);
  CHECK(v.database_url == "postgresql://u@h/db");
  CHECK(v.http_address == "127.0.0.1");
  CHECK(v.http_port == 8080);
  CHECK(v.metrics_address == "127.0.0.2");
  CHECK(v.metrics_port == 8081);
  CHECK(v.batch_max_records == 100);
  CHECK(v.batch_linger_ms == 0);
  CHECK(v.max_in_flight_batches == 4);
  CHECK(v.max_payload_bytes == 2048);
  CHECK(v.max_json_depth == 64);
  CHECK(v.restart_backoff_initial_ms == 10);
  CHECK(v.restart_backoff_max_ms == 20);
  CHECK(v.max_restarts == 5);
  CHECK(v.restart_window_s == 30);
  CHECK(v.db_retry_initial_ms == 11);
  CHECK(v.db_retry_max_ms == 22);
  CHECK(v.shutdown_timeout_ms == 3000);
  CHECK(v.log_format == "json");
  CHECK(v.log_level == "debug");
}

TEST_CASE("precedence is flag > environment > INI file > default",
          "[config]") {
  temp_file ini{"[global]\n"
                "kafka-group-id = \"from-ini\"\n"
                "http-port = 1001\n"
                "metrics-port = 2001\n"
                "kafka-topics = [\"ini.a\", \"ini.b\"]\n"
                "batch-max-records = 11\n"};
  std::map<std::string, std::string> env{{"DATABASE_URL", good_url},
                                         {"HTTP_PORT", "1002"},
                                         {"KAFKA_TOPICS", "env.a,env.b"},
                                         {"BATCH_MAX_RECORDS", "12"}};
  SECTION("INI over default") {
    run r{{ini.flag()}};
    REQUIRE(r.err.empty());
    CHECK(r.values().kafka_group_id == "from-ini");
    CHECK(r.values().http_port == 1001);
    CHECK(r.values().kafka_topics
          == std::vector<std::string>{"ini.a", "ini.b"});
    CHECK(r.values().max_restarts == 10); // default
  }
  SECTION("environment over INI") {
    run r{{ini.flag()}, env};
    REQUIRE(r.err.empty());
    CHECK(r.values().kafka_group_id == "from-ini");
    CHECK(r.values().http_port == 1002);
    CHECK(r.values().metrics_port == 2001);
    CHECK(r.values().kafka_topics
          == std::vector<std::string>{"env.a", "env.b"});
    CHECK(r.values().batch_max_records == 12);
  }
  SECTION("flag over environment, whatever the flag's position") {
    run r{{"--http-port=1003", ini.flag(), "--kafka-topics=flag.a"}, env};
    REQUIRE(r.err.empty());
    CHECK(r.values().http_port == 1003);
    CHECK(r.values().kafka_topics == std::vector<std::string>{"flag.a"});
    CHECK(r.values().batch_max_records == 12);
    CHECK(r.values().metrics_port == 2001);
    CHECK(r.values().kafka_group_id == "from-ini");
  }
  SECTION("CONFIG_FILE names the INI file; --config-file beats it") {
    temp_file other{"[global]\nhttp-port = 3001\n"};
    auto e = env;
    e.erase("HTTP_PORT");
    e["CONFIG_FILE"] = ini.path.string();
    run by_env{{}, e};
    REQUIRE(by_env.err.empty());
    CHECK(by_env.values().http_port == 1001);
    run by_flag{{other.flag()}, e};
    REQUIRE(by_flag.err.empty());
    CHECK(by_flag.values().http_port == 3001);
    CHECK(by_flag.values().kafka_group_id == "crm-events-sink");
  }
}

TEST_CASE("the last of repeated flags wins; lists are replaced",
          "[config]") {
  run r{{"--http-port=1", "--http-port=2", "--kafka-topics=a,b",
         "--kafka-topics=c", "--kafka-group-id", "spaced"}};
  REQUIRE(r.err.empty());
  CHECK(r.values().http_port == 2);
  CHECK(r.values().kafka_topics == std::vector<std::string>{"c"});
  CHECK(r.values().kafka_group_id == "spaced");
  // The same for two --config-file flags.
  temp_file a{"http-port = 5001\n"};
  temp_file b{"http-port = 5002\n"};
  run files{{a.flag(), b.flag()}};
  REQUIRE(files.err.empty());
  CHECK(files.values().http_port == 5002);
}

TEST_CASE("lists: comma-separated in flags and environment, CAF syntax too",
          "[config]") {
  SECTION("environment, trimmed, empty items dropped, \\, escapes") {
    run r{{},
          {{"DATABASE_URL", good_url},
           {"KAFKA_TOPICS", " a , b,,c "},
           {"KAFKA_PROPERTIES",
            "sasl.mechanism=PLAIN,ssl.cipher.suites=A\\,B,x=\"q\" y"}}};
    REQUIRE(r.err.empty());
    CHECK(r.values().kafka_topics == std::vector<std::string>{"a", "b", "c"});
    CHECK(r.values().kafka_properties
          == std::vector<std::string>{"sasl.mechanism=PLAIN",
                                      "ssl.cipher.suites=A,B", "x=\"q\" y"});
  }
  SECTION("flag in CAF list syntax") {
    run r{{"--kafka-topics=[\"x\", \"y\"]"}};
    REQUIRE(r.err.empty());
    CHECK(r.values().kafka_topics == std::vector<std::string>{"x", "y"});
  }
  SECTION("INI file: list syntax over several lines, or a comma string") {
    temp_file list{"[global]\nkafka-topics = [\n  \"l.a\",\n  \"l.b\",\n]\n"};
    run r1{{list.flag()}};
    REQUIRE(r1.err.empty());
    CHECK(r1.values().kafka_topics == std::vector<std::string>{"l.a", "l.b"});
    temp_file str{"[global]\nkafka-topics = \"s.a, s.b\"\n"};
    run r2{{str.flag()}};
    REQUIRE(r2.err.empty());
    CHECK(r2.values().kafka_topics == std::vector<std::string>{"s.a", "s.b"});
  }
  SECTION("empty list") {
    run r{{"--kafka-properties=a=1", "--kafka-properties=[]"}};
    REQUIRE(r.err.empty());
    CHECK(r.values().kafka_properties.empty());
  }
}

TEST_CASE("string values are taken verbatim", "[config]") {
  std::string odd = "postgresql://u@h/db?application_name=a\"b\\c";
  run r{{"--kafka-group-id=\"quoted\""},
        {{"DATABASE_URL", odd}, {"KAFKA_BOOTSTRAP_SERVERS", "\"h\":1"}}};
  REQUIRE(r.err.empty());
  CHECK(r.values().database_url == odd);
  CHECK(r.values().kafka_group_id == "\"quoted\"");
  CHECK(r.values().kafka_bootstrap_servers == "\"h\":1");
}

TEST_CASE("environment values are typed, not parsed as CAF syntax",
          "[config]") {
  run r{{},
        {{"DATABASE_URL", good_url},
         {"KAFKA_GROUP_ID", "[g], \"x\" \\n"},
         {"KAFKA_TOPICS", "[\"x\", \"y\"]"},
         {"KAFKA_PROPERTIES", "a=[1],b=\"2\""},
         {"HTTP_PORT", " 8080 "}}};
  REQUIRE(r.err.empty());
  CHECK(r.values().kafka_group_id == "[g], \"x\" \\n");
  CHECK(r.values().kafka_topics == std::vector<std::string>{"x", "y"});
  CHECK(r.values().kafka_properties
        == std::vector<std::string>{"a=[1]", "b=\"2\""});
  CHECK(r.values().http_port == 8080);
  run bad{{}, {{"DATABASE_URL", good_url}, {"KAFKA_TOPICS", "[1, 2]"}}};
  CHECK(bad.err
        == line("invalid setting kafka-topics (KAFKA_TOPICS): \"[1, 2]\" is "
                "not a list (use a,b or [\"a\", \"b\"] in the INI file) "
                "(from the environment)"));
}

TEST_CASE("empty environment variables count as unset", "[config]") {
  run r{{}, {{"DATABASE_URL", good_url}, {"HTTP_PORT", ""}}};
  REQUIRE(r.err.empty());
  CHECK(r.values().http_port == 9106);
}

TEST_CASE("--help prints every setting to out and exits 0", "[config]") {
  for (auto flag : {"--help", "-h"}) {
    run r{{"--bogus", flag, "--http-port=abc"}, {}};
    CHECK_FALSE(r.result.proceed);
    CHECK(r.result.exit_code == 0);
    CHECK(r.err.empty());
    for (auto& [name, value] : ces::describe(ces::settings{})) {
      CHECK_THAT(r.out, Catch::Contains("--" + name + "="));
      CHECK_THAT(r.out, Catch::Contains(ces::env_name(name)));
    }
    CHECK_THAT(r.out, Catch::Contains("(default: 9106)"));
    CHECK_THAT(r.out,
               Catch::Contains("(default: apexflow.leads.created,apexflow."));
    CHECK_THAT(r.out, Catch::Contains("(required)"));
    CHECK_THAT(r.out, Catch::Contains("Kafka:"));
    CHECK_THAT(r.out, Catch::Contains("--config-file=PATH"));
    // Not CAF's generated help.
    CHECK_THAT(r.out, !Catch::Contains("work-stealing"));
    std::istringstream lines{r.out};
    for (std::string l; std::getline(lines, l);)
      CHECK(l.size() <= 79);
  }
}

TEST_CASE("--dump-config prints the effective settings, masked", "[config]") {
  run r{{"--dump-config", "--http-port=4242"}};
  CHECK_FALSE(r.result.proceed);
  CHECK(r.result.exit_code == 0);
  CHECK(r.err.empty());
  CHECK_THAT(r.out, Catch::Contains("http-port=4242\n"));
  CHECK_THAT(r.out, Catch::Contains(
                      "database-url=postgresql://crm:***@db.example:5432/crm"));
  CHECK_THAT(r.out, !Catch::Contains("s3cret"));
}

TEST_CASE("values CAF cannot parse name the setting and the variable",
          "[config]") {
  auto fails_with = [](const run& r, const std::string& message) {
    CHECK_FALSE(r.result.proceed);
    CHECK(r.result.exit_code == 2);
    CHECK(r.out.empty());
    CHECK(r.err == line(message));
  };
  fails_with(run{{"--http-port=abc"}},
             "invalid setting http-port (HTTP_PORT): \"abc\" is not a port "
             "number (1-65535)");
  fails_with(run{{}, {{"DATABASE_URL", good_url}, {"HTTP_PORT", "abc"}}},
             "invalid setting http-port (HTTP_PORT): \"abc\" is not a port "
             "number (1-65535) (from the environment)");
  fails_with(run{{"--metrics-port=70000"}},
             "invalid setting metrics-port (METRICS_PORT): \"70000\" is not a "
             "port number (1-65535)");
  fails_with(run{{"--batch-max-records=-5"}},
             "invalid setting batch-max-records (BATCH_MAX_RECORDS): \"-5\" is "
             "not a non-negative integer");
  fails_with(run{{"--max-restarts=3x"}},
             "invalid setting max-restarts (MAX_RESTARTS): \"3x\" is not an "
             "integer");
  fails_with(run{{"--max-restarts=99999999999"}},
             "invalid setting max-restarts (MAX_RESTARTS): \"99999999999\" is "
             "not an integer");
  fails_with(run{{"--kafka-topics=[\"a\","}},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"[\"a\",\" is not "
             "a list (use a,b or [\"a\", \"b\"] in the INI file)");
  fails_with(run{{"--http-port"}},
             "missing value for --http-port (use --http-port=VALUE)");
  fails_with(run{{"--bogus=1"}}, "unknown flag --bogus (see --help)");
  fails_with(run{{"--kafka-topic=a"}},
             "unknown flag --kafka-topic (see --help)");
  fails_with(run{{"stray"}}, "unexpected argument \"stray\" (see --help)");
  fails_with(run{{"--scheduler.max-threads=many"}},
             "invalid argument \"--scheduler.max-threads=many\": "
             "unexpected_character");
  fails_with(run{{"--config-file=/nonexistent/ces.ini"}},
             "cannot read config file \"/nonexistent/ces.ini\": No such file "
             "or directory");
}

TEST_CASE("INI files are checked strictly", "[config]") {
  auto fails_with = [](const std::string& content, const std::string& what) {
    temp_file ini{content};
    run r{{ini.flag()}};
    CHECK_FALSE(r.result.proceed);
    CHECK(r.result.exit_code == 2);
    auto where = " in config file \"" + ini.path.string() + "\"";
    auto msg = what;
    if (auto pos = msg.find("@"); pos != std::string::npos)
      msg.replace(pos, 1, where);
    CHECK(r.err == line(msg));
  };
  fails_with("[global]\nhttp-port = 70000\n",
             "invalid setting http-port (HTTP_PORT)@: 70000 is not a port "
             "number (1-65535)");
  fails_with("[global]\nhttp-port = \"abc\"\n",
             "invalid setting http-port (HTTP_PORT)@: \"abc\" is not a port "
             "number (1-65535)");
  fails_with("[global]\nkafka-group-id = 42\n",
             "invalid setting kafka-group-id (KAFKA_GROUP_ID)@: 42 is not a "
             "string (quote it in the INI file)");
  fails_with("[global]\nkafka-topics = [1, 2]\n",
             "invalid setting kafka-topics (KAFKA_TOPICS)@: [1, 2] is not a "
             "list (use a,b or [\"a\", \"b\"] in the INI file)");
  fails_with("[global]\nhttp-prot = 1\n", "unknown setting \"http-prot\"@");
  fails_with("[kafka]\ntopics = \"a\"\n", "unknown section [kafka]@");
  fails_with("[scheduler]\nmax-thread = 2\n",
             "unknown setting scheduler.max-thread@");
  // CAF's own sections are accepted.
  temp_file ok{"[scheduler]\nmax-threads = 2\n"};
  run r{{ok.flag()}};
  CHECK(r.err.empty());
  CHECK(r.result.proceed);
  // Syntax errors carry the position.
  temp_file bad{"[global]\nhttp-port = 1\nkafka-group-id = unquoted\n"};
  run s{{bad.flag()}};
  CHECK_THAT(s.err, Catch::StartsWith("crm-events-sink: invalid config file \""
                                      + bad.path.string()
                                      + "\": syntax error ("));
  CHECK_THAT(s.err, Catch::Contains(") at line 3, column "));
}

TEST_CASE("semantic validation", "[config]") {
  auto fails_with = [](std::vector<std::string> args,
                       const std::string& message) {
    run r{std::move(args)};
    CHECK_FALSE(r.result.proceed);
    CHECK(r.result.exit_code == 2);
    CHECK(r.err == line(message));
  };
  fails_with({"--database-url="},
             "missing setting database-url (DATABASE_URL): a libpq URI such "
             "as postgresql://user@host:5432/db is required");
  {
    run r{{}, {}};
    CHECK(r.err
          == line("missing setting database-url (DATABASE_URL): a libpq URI "
                  "such as postgresql://user@host:5432/db is required"));
  }
  // libpq's reason, without what it quotes from the string.
  fails_with({"--database-url=postgresql://u:pw@h/db?bogus=1"},
             "invalid setting database-url (DATABASE_URL): not a libpq "
             "connection string: invalid URI query parameter: \"***\" (the "
             "value is not shown: it may hold a password)");
  fails_with({"--database-url=postgresql://u:pw@[::1/db"},
             "invalid setting database-url (DATABASE_URL): not a libpq "
             "connection string: end of string reached when looking for "
             "matching \"]\" in IPv6 host address in URI: \"***\" (the "
             "value is not shown: it may hold a password)");
  fails_with({"--database-url=host=h password=a b"},
             "invalid setting database-url (DATABASE_URL): not a libpq "
             "connection string: missing \"=\" after \"***\" in connection "
             "info string (the value is not shown: it may hold a password)");
  fails_with({"--database-url=postgresql://u:pw@h:54x/db"},
             "invalid setting database-url (DATABASE_URL): the port is not a "
             "number 1-65535; in a URI, write '@' and '/' in the password as "
             "%40 and %2F (the value is not shown: it may hold a password)");
  fails_with({"--database-url=host=h port=0"},
             "invalid setting database-url (DATABASE_URL): the port is not a "
             "number 1-65535 (the value is not shown: it may hold a "
             "password)");
  fails_with({"--database-url=postgresql://u:p@w@h/db"},
             "invalid setting database-url (DATABASE_URL): the host name "
             "contains '@'; in a URI, write '@' and '/' in the password as "
             "%40 and %2F (the value is not shown: it may hold a password)");
  fails_with({"--http-port=0"}, "invalid setting http-port (HTTP_PORT): "
                                "\"0\" is not a port number (1-65535)");
  {
    temp_file ini{"metrics-port = 0\n"};
    run r{{ini.flag()}};
    CHECK(r.err == line("invalid setting metrics-port (METRICS_PORT): 0 is "
                        "not a port number (1-65535)"));
  }
  fails_with({"--metrics-port=9106"}, "invalid setting metrics-port "
                                      "(METRICS_PORT): 9106 is also the "
                                      "http-port");
  fails_with({"--kafka-topics=ok,bad/topic"},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"bad/topic\" is "
             "not a legal Kafka topic name (letters, digits, '.', '_', '-'; "
             "at most 249 characters)");
  fails_with({"--kafka-topics=" + std::string(250, 'a')},
             "invalid setting kafka-topics (KAFKA_TOPICS): \""
               + std::string(250, 'a')
               + "\" is not a legal Kafka topic name (letters, digits, '.', "
                 "'_', '-'; at most 249 characters)");
  fails_with({"--kafka-topics=.."},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"..\" is not a "
             "legal Kafka topic name (letters, digits, '.', '_', '-'; at most "
             "249 characters)");
  fails_with({"--kafka-topics=a,a"},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"a\" is listed "
             "twice");
  // A topic starting with '^' is a pattern (POSIX extended regex).
  {
    run r{{"--kafka-topics=^apexflow\\..*,crm.audit"}};
    CHECK(r.result.proceed);
    CHECK(r.values().kafka_topics
          == std::vector<std::string>{"^apexflow\\..*", "crm.audit"});
  }
  fails_with({"--kafka-topics=^crm.(leads"},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"^crm.(leads\" "
             "is not a valid regular expression");
  fails_with({"--kafka-topics=^a.*,^a.*"},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"^a.*\" is "
             "listed twice");
  fails_with({"--kafka-bootstrap-servers=embedded", "--kafka-topics=^a.*"},
             "invalid setting kafka-topics (KAFKA_TOPICS): \"^a.*\": the "
             "embedded broker needs topic names, not patterns");
  fails_with({"--kafka-topics=,"}, "missing setting kafka-topics "
                                   "(KAFKA_TOPICS): at least one topic is "
                                   "required");
  fails_with({"--kafka-group-id= "}, "missing setting kafka-group-id "
                                     "(KAFKA_GROUP_ID): a consumer group id "
                                     "is required");
  fails_with({"--kafka-bootstrap-servers="},
             "missing setting kafka-bootstrap-servers "
             "(KAFKA_BOOTSTRAP_SERVERS): a list of host:port pairs (or "
             "\"embedded\") is required");
  fails_with({"--kafka-properties=acks=all,oops"},
             "invalid setting kafka-properties (KAFKA_PROPERTIES): item 2 is "
             "not a key=value librdkafka property (not shown: it may be part "
             "of a secret; a comma inside a value is written \\,)");
  fails_with({"--kafka-properties=acks=all,=1"},
             "invalid setting kafka-properties (KAFKA_PROPERTIES): \"=1\" "
             "is not a key=value librdkafka property");
  fails_with({"--log-format=xml"}, "invalid setting log-format (LOG_FORMAT): "
                                   "\"xml\" is neither text nor json");
  fails_with({"--log-level=loud"},
             "invalid setting log-level (LOG_LEVEL): \"loud\" is not one of "
             "trace, debug, info, warn, error, critical, off");
  fails_with({"--batch-max-records=0"},
             "invalid setting batch-max-records (BATCH_MAX_RECORDS): 0 must "
             "be at least 1");
  fails_with({"--max-in-flight-batches=0"},
             "invalid setting max-in-flight-batches (MAX_IN_FLIGHT_BATCHES): "
             "0 must be at least 1");
  fails_with({"--batch-linger-ms=-1"},
             "invalid setting batch-linger-ms (BATCH_LINGER_MS): -1 must not "
             "be negative");
  fails_with({"--shutdown-timeout-ms=0"},
             "invalid setting shutdown-timeout-ms (SHUTDOWN_TIMEOUT_MS): 0 "
             "must be at least 1");
  fails_with({"--kafka-session-timeout-ms=-3"},
             "invalid setting kafka-session-timeout-ms "
             "(KAFKA_SESSION_TIMEOUT_MS): -3 must be at least 1");
  fails_with({"--max-restarts=0"}, "invalid setting max-restarts "
                                   "(MAX_RESTARTS): 0 must be at least 1");
  fails_with({"--restart-backoff-initial-ms=500",
              "--restart-backoff-max-ms=100"},
             "invalid setting restart-backoff-initial-ms "
             "(RESTART_BACKOFF_INITIAL_MS): 500 is greater than "
             "restart-backoff-max-ms (100)");
  fails_with({"--db-retry-initial-ms=6000"},
             "invalid setting db-retry-initial-ms (DB_RETRY_INITIAL_MS): 6000 "
             "is greater than db-retry-max-ms (5000)");
  // Zero linger and equal bounds are fine.
  run ok{{"--batch-linger-ms=0", "--db-retry-initial-ms=5000",
          "--http-address=127.0.0.1", "--metrics-address=127.0.0.2",
          "--metrics-port=9106", "--log-level=warn"}};
  CHECK(ok.err.empty());
  CHECK(ok.result.proceed);
}

TEST_CASE("dead-letter settings are checked, the webhook secret never shown",
          "[config]") {
  auto fails_with = [](std::vector<std::string> args,
                       const std::string& message) {
    run r{std::move(args)};
    CHECK_FALSE(r.result.proceed);
    CHECK(r.result.exit_code == 2);
    CHECK(r.err == line(message));
    CHECK(r.err.find("s3cr3t") == std::string::npos);
  };
  fails_with({"--dlq-auto-retry-classes=db_rejected,typo"},
             "invalid setting dlq-auto-retry-classes (DLQ_AUTO_RETRY_CLASSES): "
             "\"typo\" is not an error class (empty_value, too_large, "
             "invalid_json, missing_tenant, db_rejected)");
  fails_with({"--dlq-webhook-url=ftp://h/s3cr3t", "--dlq-webhook-secret=x"},
             "invalid setting dlq-webhook-url (DLQ_WEBHOOK_URL): must start "
             "with http:// or https://");
  fails_with({"--dlq-webhook-url=https://h/s3cr3t"},
             "missing setting dlq-webhook-secret (DLQ_WEBHOOK_SECRET): the "
             "webhook is on (dlq-webhook-url is set): its signing secret "
             "(whsec_<base64>) is required");
  fails_with({"--dlq-webhook-url=https://h/x", "--dlq-webhook-secret=s3cr3t"},
             "invalid setting dlq-webhook-secret (DLQ_WEBHOOK_SECRET): must "
             "be whsec_ followed by the base64 of 24 to 64 random bytes "
             "(Standard Webhooks)");
  // whsec_ but not base64, or too few / too many bytes.
  for (auto bad : {"whsec_s3cr3t!!s3cr3t!!s3cr3t!!s3cr3t!!",
                   "whsec_czNjcjN0czNjcjN0czNjcjN0", // 18 bytes
                   "whsec_czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcjN0"
                   "czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcjM="}) // 65 bytes
    fails_with({"--dlq-webhook-url=https://h/x",
                std::string{"--dlq-webhook-secret="} + bad},
               "invalid setting dlq-webhook-secret (DLQ_WEBHOOK_SECRET): must "
               "be whsec_ followed by the base64 of 24 to 64 random bytes "
               "(Standard Webhooks)");
  // 24 bytes (the spec's test secret) and 64 bytes are fine.
  for (auto good : {"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "whsec_czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcjN0"
                    "czNjcjN0czNjcjN0czNjcjN0czNjcjN0czNjcg=="}) { // 64 bytes
    run r{{"--dlq-webhook-url=https://h/x",
           std::string{"--dlq-webhook-secret="} + good}};
    CHECK(r.err.empty());
    CHECK(r.result.proceed);
  }
  fails_with({"--dlq-retry-initial-ms=5000", "--dlq-retry-max-ms=1000"},
             "invalid setting dlq-retry-initial-ms (DLQ_RETRY_INITIAL_MS): "
             "5000 is greater than dlq-retry-max-ms (1000)");
  ces::settings s;
  s.database_url = "postgresql://u@h/db";
  s.dlq_webhook_url = "https://hooks.example/T0/s3cr3t";
  s.dlq_webhook_secret = "whsec_czNjcjN0czNjcjN0czNjcjN0czNjcjN0";
  for (auto& [k, v] : ces::describe(s))
    CHECK(v.find("s3cr3t") == std::string::npos);
}

TEST_CASE("passwords never reach the output", "[config]") {
  SECTION("an unparseable URL with a password") {
    run r{{"--database-url=postgresq://u:hunter2@h/db"}};
    CHECK(r.result.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("(a URI starts with postgresql:// or "
                                      "postgres://)"));
    CHECK_THAT(r.err, !Catch::Contains("hunter2"));
  }
  SECTION("mask_database_url") {
    using ces::mask_database_url;
    CHECK(mask_database_url("postgresql://u:pw@h:5432/db")
          == "postgresql://u:***@h:5432/db");
    CHECK(ces::mask_url("") == "");
    CHECK(ces::mask_url("https://hooks.example/") == "https://hooks.example");
    CHECK(ces::mask_url("https://hooks.example:8443/T0/B1/s3cr3t")
          == "https://hooks.example:8443/***");
    CHECK(ces::mask_url("http://u:pw@h:80") == "http://h:80/***");
    CHECK(ces::mask_url("http://h?token=x") == "http://h/***");
    CHECK(ces::mask_url("hooks.example/abc") == "***");
    CHECK(mask_database_url("postgres://u:p%40w@h1:1,h2:2/db?sslmode=x")
          == "postgres://u:***@h1:1,h2:2/db?sslmode=x");
    CHECK(mask_database_url("postgresql://u@h/db")
          == "postgresql://u@h/db");
    // Rebuilt from libpq's parse, in libpq's order of options.
    CHECK(mask_database_url("postgresql://h/db?user=u&password=pw"
                            "&application_name=a%20b")
          == "postgresql://u:***@h/db?application_name=a%20b");
    CHECK(mask_database_url("postgresql://u:a@b@h/db")
          == ces::unparseable_database_url);
    CHECK(mask_database_url("host=h password=pw user=u")
          == "user=u password=*** host=h");
    CHECK(mask_database_url("host=h password = 'p w\\'x' user=u")
          == "user=u password=*** host=h");
  }
  SECTION("describe masks secret librdkafka properties") {
    ces::settings s;
    s.database_url = "postgresql://u:pw@h/db";
    s.kafka_properties = {"sasl.username=me", "sasl.password=pw",
                          "ssl.key.password=k", "x=a,b"};
    std::map<std::string, std::string> m;
    for (auto& [k, v] : ces::describe(s))
      m[k] = v;
    CHECK(m["database-url"] == "postgresql://u:***@h/db");
    CHECK(m["kafka-properties"]
          == "sasl.username=me,sasl.password=***,ssl.key.password=***,"
             "x=a\\,b");
    CHECK(m["kafka-topics"] == "apexflow.leads.created,apexflow.jobs.created");
    CHECK(m["http-port"] == "9106");
    CHECK(m.size() == 76);
  }
}

TEST_CASE("the shipped INI file documents every setting with its default",
          "[config]") {
  std::ifstream f{CES_SOURCE_DIR "/config/crm-events-sink.ini"};
  REQUIRE(f);
  std::stringstream buf;
  buf << f.rdbuf();
  auto text = buf.str();
  // As shipped (all commented out) it changes nothing.
  temp_file shipped{text};
  run as_is{{shipped.flag()}};
  REQUIRE(as_is.err.empty());
  ces::settings expected;
  expected.database_url = good_url;
  CHECK(ces::describe(as_is.values()) == ces::describe(expected));
  // Uncommenting every "; name = value" line yields the defaults again.
  std::istringstream in{text};
  std::ostringstream uncommented;
  std::set<std::string> documented;
  for (std::string l; std::getline(in, l);) {
    for (auto& [name, value] : ces::describe(ces::settings{})) {
      auto prefix = "; " + name + " = ";
      if (l.rfind(prefix, 0) == 0) {
        documented.insert(name);
        l = l.substr(2);
      }
    }
    uncommented << l << '\n';
  }
  for (auto& [name, value] : ces::describe(ces::settings{}))
    CHECK(documented.count(name) == 1);
  temp_file all{uncommented.str()};
  run r{{all.flag()}, {}};
  REQUIRE(r.err.empty());
  expected.database_url = r.values().database_url;
  CHECK_THAT(r.values().database_url, Catch::StartsWith("postgresql://"));
  CHECK(ces::describe(r.values()) == ces::describe(expected));
}

TEST_CASE("CAF's own options still work and the config starts a system",
          "[config]") {
  run r{{"--scheduler.max-threads=1", "--scheduler.policy=sharing"}};
  REQUIRE(r.err.empty());
  REQUIRE(r.result.proceed);
  CHECK(caf::get_or(r.cfg, "scheduler.max-threads", size_t{0}) == 1u);
  caf::actor_system sys{r.cfg};
  CHECK(sys.scheduler().num_workers() == 1u);
}

namespace {

/// A DATABASE_URL and the secrets in it (each must never be printed).
struct url_case {
  std::string url;
  std::vector<std::string> secrets;
  bool valid; // libpq parses it and the service accepts it
};

const std::vector<url_case>& tricky_urls() {
  static const std::vector<url_case> xs = {
    // libpq ends the password at '@' (or '/'), not at '?' or '#'.
    {"postgresql://sink:pa?ss-Sq1@db/crm", {"pa?ss-Sq1", "ss-Sq1"}, true},
    {"postgresql://sink:pa#ss-Sh2@db/crm", {"pa#ss-Sh2", "ss-Sh2"}, true},
    {"postgres://sink:S3cr%40t-Se3@db:5432/crm",
     {"S3cr%40t-Se3", "S3cr@t-Se3", "t-Se3"}, true},
    {"postgresql://sink:pa ss\"'-Sx4@db/crm", {"pa ss", "ss\"'-Sx4"}, true},
    // Password options in the query: password and sslpassword.
    {"postgresql://u@db/crm?sslpassword=Ssl5&sslmode=require", {"Ssl5"},
     true},
    {"postgresql://db/crm?password=Sq6&user=u", {"Sq6"}, true},
    // key=value form.
    {"host=db user=u password='Sk7 x y' dbname=crm", {"Sk7"}, true},
    {"host=db sslpassword=Sk8a password=Sk8b", {"Sk8a", "Sk8b"}, true},
    {"host=db password=Sk9\\'q", {"Sk9"}, true},
    // libpq cannot parse these: nothing of the string is shown.
    {"postgresql://sink:pa%zzss-Sz10@db/crm", {"pa%zz", "ss-Sz10"}, false},
    {"host=db password=Su11a Su11b", {"Su11a", "Su11b"}, false},
    {"host=db password=Su12a Su12b=c", {"Su12a", "Su12b"}, false},
    {"postgresq://u:Su13@h/db", {"Su13"}, false},
    {"postgresql://u:Su14@[::1/db", {"Su14"}, false},
    {"postgresql://u:Su15@h/db?password=a=b", {"Su15"}, false},
    // An unencoded '/' or '@' in a URI's password: libpq reads a host, a
    // port or a database name out of it; refused, not shown.
    {"postgresql://sink:Sp16/x@db/crm", {"Sp16", "x@db"}, false},
    {"postgresql://sink:1616/Sp16x@db/crm", {"1616", "Sp16x"}, false},
    {"postgresql://sink:Sa17@x@db/crm", {"Sa17", "x@db"}, false},
  };
  return xs;
}

bool shows_any(const std::string& text, const std::vector<std::string>& xs) {
  for (auto& x : xs)
    if (text.find(x) != std::string::npos)
      return true;
  return false;
}

} // namespace

TEST_CASE("no part of a DATABASE_URL password is ever printed",
          "[config][secrets]") {
  for (auto& c : tricky_urls()) {
    INFO("DATABASE_URL=" << c.url);
    SECTION(c.url) {
      run dump{{"--dump-config"}, {{"DATABASE_URL", c.url}}};
      INFO("out: " << dump.out << "err: " << dump.err);
      CHECK_FALSE(shows_any(dump.out + dump.err, c.secrets));
      CHECK(dump.result.exit_code == (c.valid ? 0 : 2));
      ces::settings s;
      s.database_url = c.url;
      std::string described;
      for (auto& [k, v] : ces::describe(s))
        described += k + "=" + v + "\n";
      INFO("describe: " << described);
      CHECK_FALSE(shows_any(described, c.secrets));
      CHECK_FALSE(shows_any(ces::mask_database_url(c.url), c.secrets));
      if (c.valid) {
        CHECK(dump.err.empty());
        CHECK_THAT(dump.out, Catch::Contains("***"));
      } else {
        CHECK(std::count(dump.err.begin(), dump.err.end(), '\n') == 1);
        CHECK_THAT(dump.err, Catch::StartsWith("crm-events-sink: invalid "
                                               "setting database-url "
                                               "(DATABASE_URL): "));
      }
    }
  }
}

TEST_CASE("secret librdkafka properties are never printed",
          "[config][secrets]") {
  std::vector<std::string> secrets = {"Sj1", "Sk2", "Sp3", "Sks4", "Sc5",
                                      "Sc6", "St7", "Sv8"};
  std::string props
    = "security.protocol=SASL_SSL,"
      "sasl.jaas.config=org.apache.kafka.common.security.plain."
      "PlainLoginModule required username=\"u\" password=\"Sj1\";,"
      "ssl.key.password=Sk2,sasl.password=Sp3,ssl.keystore.password=Sks4,"
      "sasl.oauthbearer.client.secret=Sc5,SASL.PASSWORD=Sc6,"
      "some.token=St7,ssl.key.pem=-----BEGIN Sv8";
  run r{{"--dump-config"}, {{"DATABASE_URL", good_url},
                            {"KAFKA_PROPERTIES", props}}};
  INFO(r.out << r.err);
  REQUIRE(r.result.exit_code == 0);
  CHECK_FALSE(shows_any(r.out + r.err, secrets));
  CHECK_THAT(r.out, Catch::Contains("security.protocol=SASL_SSL,"
                                    "sasl.jaas.config=***,"
                                    "ssl.key.password=***,"
                                    "sasl.password=***,"
                                    "ssl.keystore.password=***,"
                                    "sasl.oauthbearer.client.secret=***,"
                                    "SASL.PASSWORD=***,some.token=***,"
                                    "ssl.key.pem=***\n"));
  SECTION("the tail of a value cut at an unescaped comma is not shown") {
    run bad{{"--kafka-properties=sasl.jaas.config=x password=\"Sj9a,Sj9b\";"}};
    CHECK(bad.result.exit_code == 2);
    CHECK_FALSE(shows_any(bad.out + bad.err, {"Sj9a", "Sj9b"}));
    CHECK_THAT(bad.err, Catch::Contains("invalid setting kafka-properties "
                                        "(KAFKA_PROPERTIES): item 2 is not "
                                        "a key=value librdkafka property"));
  }
}
