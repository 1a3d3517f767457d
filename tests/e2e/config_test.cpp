// End-to-end: start-up behaviour of the binary that needs no broker.
#include "tests/e2e/harness.hpp"
#include "tests/support/tls_pki.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <sstream>
#include <unistd.h>

using namespace ces::e2e;
using ces::test::spawn_options;

namespace {

/// Runs the sink to completion with `args` and `env`; returns its status.
ces::test::exit_status run_sink(std::vector<std::string> args,
                                spawn_options opts, std::string& err,
                                std::string& out) {
  args.insert(args.begin(), CES_SINK_BIN);
  opts.unset_env = {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "HTTP_PORT",
                    "METRICS_PORT", "KAFKA_TOPICS", "KAFKA_GROUP_ID",
                    "CONFIG_FILE"};
  child_process p{args, opts};
  auto st = p.wait_exit(30s);
  REQUIRE(st);
  err = p.stderr_text();
  out = p.stdout_text();
  return *st;
}

/// run_sink() against `database_url`, an unreachable broker, JSON logs and
/// free ports, plus `extra` flags.
ces::test::exit_status run_sink_on(const std::string& database_url,
                                   std::vector<std::string> extra,
                                   std::string& err, std::string& out) {
  std::vector<std::string> args{
    "--database-url=" + database_url, "--kafka-bootstrap-servers=127.0.0.1:1",
    "--log-format=json",
    "--metrics-port=" + std::to_string(ces::test::free_tcp_port()),
    "--http-port=" + std::to_string(ces::test::free_tcp_port())};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_sink(std::move(args), {}, err, out);
}

} // namespace

TEST_CASE("configuration errors stop the start with one line and exit 2",
          "[e2e]") {
  std::string err, out;
  SECTION("missing DATABASE_URL") {
    auto st = run_sink({}, {}, err, out);
    CHECK(st.exited);
    CHECK(st.code == 2);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find("database-url (DATABASE_URL)") != std::string::npos);
  }
  SECTION("invalid HTTP_PORT from the environment") {
    spawn_options o;
    o.env = {{"DATABASE_URL", "postgresql://u@127.0.0.1:1/db"},
             {"HTTP_PORT", "abc"}};
    auto st = run_sink({}, o, err, out);
    CHECK(st.code == 2);
    CHECK(std::count(err.begin(), err.end(), '\n') == 1);
    CHECK(err.find("http-port (HTTP_PORT)") != std::string::npos);
  }
  SECTION("--help lists every setting with its default and exits 0") {
    auto st = run_sink({"--help"}, {}, err, out);
    CHECK(st.success());
    for (auto name : {"KAFKA_BOOTSTRAP_SERVERS", "KAFKA_TOPICS",
                      "KAFKA_GROUP_ID", "DATABASE_URL", "HTTP_PORT",
                      "METRICS_PORT", "9106", "9105"})
      CHECK(out.find(name) != std::string::npos);
  }
  SECTION("--version prints the version and the git revision, exits 0") {
    auto st = run_sink({"--version"}, {}, err, out);
    CHECK(st.success());
    // "crm-events-sink 0.1.0 (revision 1a2b3c4d5e6f)\n", or "-dirty"
    // appended, or "unknown" without git: never empty.
    CHECK(out.rfind("crm-events-sink " CES_VERSION_STRING " (revision ", 0)
          == 0);
    CHECK(out.find("(revision )") == std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
    CHECK(err.empty());
  }
}

TEST_CASE("a child that keeps crashing ends the process after the budget",
          "[e2e]") {
  // librdkafka refuses this property when the consumer is created (not when
  // it is set, which the start-up would refuse with exit 2; producers ignore
  // it): the CONSUMER fails at every start.
  world w{{"t"}, 1};
  spawn_options o;
  child_process sink{
    {CES_SINK_BIN, "--database-url=" + w.db_url(),
     "--kafka-bootstrap-servers=" + w.bootstrap(), "--kafka-topics=t",
     "--kafka-properties=fetch.max.bytes=1024",
     "--max-restarts=3",
     "--restart-backoff-initial-ms=50", "--log-format=json",
     "--metrics-port=" + std::to_string(ces::test::free_tcp_port()),
     "--http-port=" + std::to_string(ces::test::free_tcp_port())},
    o};
  auto st = sink.wait_exit(30s);
  REQUIRE(st);
  CHECK(st->exited);
  CHECK(st->code == 3);
  // Each supervision event is one JSON line with actor, reason, attempt and
  // backoff_ms. The property breaks the CONSUMER at each start.
  std::istringstream lines{sink.stderr_text()};
  std::map<std::string, int> events;
  std::map<std::string, int> last_attempt; // per actor
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    auto ev = j.value("event", "");
    if (ev != "actor_crash" && ev != "actor_restart" && ev != "actor_give_up")
      continue;
    ++events[ev];
    auto actor = j.at("actor").get<std::string>();
    CHECK(j.at("logger") == "supervisor");
    CHECK(actor == "consumer");
    CHECK(j.at("reason").is_string());
    CHECK(j.at("attempt").is_number_integer());
    CHECK(j.at("backoff_ms").is_number_integer());
    if (ev == "actor_crash") {
      CHECK(j.at("reason").get<std::string>().find("fetch.max.bytes")
            != std::string::npos);
      // Consecutive failures of one actor back off exponentially.
      auto attempt = j.at("attempt").get<int>();
      CHECK(attempt == last_attempt[actor] + 1);
      last_attempt[actor] = attempt;
      CHECK(j.at("backoff_ms").get<int>() == 50 << (attempt - 1));
    }
  }
  // max-restarts=3: the fourth failure within the window ends the process.
  CHECK(events["actor_crash"] == 3);
  CHECK(events["actor_restart"] >= 3);
  CHECK(events["actor_give_up"] == 1);
  CHECK(last_attempt["consumer"] >= 1);
}

TEST_CASE("a Kafka property librdkafka refuses stops the start with exit 2",
          "[e2e]") {
  std::string err, out;
  auto st = run_sink_on(pg().create_database(),
                        {"--kafka-properties=fetch.wait.max.ms=soon"}, err,
                        out);
  CHECK(st.exited);
  CHECK(st.code == 2);
  CHECK(err.find("\"event\":\"kafka_config_invalid\"")
        != std::string::npos);
  CHECK(err.find("fetch.wait.max.ms") != std::string::npos);
}

TEST_CASE("a database whose encoding is not UTF8 stops the start with exit 1",
          "[e2e][encoding]") {
  std::string err, out;
  auto name = "ces_e2e_sql_ascii_" + std::to_string(::getpid());
  pg().exec("CREATE DATABASE " + name + " ENCODING 'SQL_ASCII'"
            " TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
  auto st = run_sink_on(pg().url(name), {}, err, out);
  CHECK(st.exited);
  CHECK(st.code == 1);
  // One line after `starting`, saying why, without the URL.
  std::istringstream lines{err};
  std::vector<nlohmann::json> critical;
  for (std::string line; std::getline(lines, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.value("level", "") == "critical")
      critical.push_back(j);
  }
  REQUIRE(critical.size() == 1);
  CHECK(critical[0]["event"] == "db_encoding_unsupported");
  auto reason = critical[0]["reason"].get<std::string>();
  CHECK(reason.find("SQL_ASCII") != std::string::npos);
  CHECK(reason.find("UTF8") != std::string::npos);
  CHECK(reason.find("postgresql://") == std::string::npos);
  CHECK(pg().query_value("SELECT to_regclass('schema_migrations') IS NULL",
                         name)
        == "t");
}

TEST_CASE("no secret in --dump-config, the starting line, crash reasons or "
          "the API",
          "[e2e]") {
  // Each is a secret the sink is given; none may appear anywhere.
  const std::vector<std::string> secrets = {"E2Ea1", "E2Eb2", "E2Ec3",
                                            "E2Ed4", "E2Ee5"};
  auto shows_secret = [&](const std::string& text) {
    for (auto& s : secrets)
      if (text.find(s) != std::string::npos)
        return true;
    return false;
  };
  // A password libpq ends at '@' (not at '?'), an sslpassword in the query;
  // PostgreSQL trusts local connections here, so the URL still works.
  auto url = pg().create_database();
  url.replace(url.find("postgres@"), 9, "postgres:pa?ss-E2Ea1@");
  url += "?sslpassword=E2Eb2";
  const std::string props
    = "sasl.password=E2Ec3,ssl.key.password=E2Ed4,"
      "sasl.jaas.config=org.apache.kafka.common.security.plain."
      "PlainLoginModule required username=\"u\" password=\"E2Ee5\";";
  SECTION("--dump-config") {
    spawn_options o;
    o.env = {{"DATABASE_URL", url}, {"KAFKA_PROPERTIES", props}};
    std::string err, out;
    auto st = run_sink({"--dump-config"}, o, err, out);
    INFO(out << err);
    CHECK(st.success());
    CHECK(err.empty());
    CHECK_FALSE(shows_secret(out));
    CHECK_THAT(out, Catch::Contains("database-url=postgresql://postgres:***@"));
    CHECK_THAT(out, Catch::Contains("sasl.jaas.config=***"));
  }
  // The sink against a database it can reach and a broker it cannot.
  auto start = [&](const std::string& properties) {
    spawn_options o;
    o.env = {{"KAFKA_PROPERTIES", properties}};
    auto http_port = ces::test::free_tcp_port();
    auto sink = std::make_unique<child_process>(
      std::vector<std::string>{
        CES_SINK_BIN, "--database-url=" + url,
        // This test reads /supervision and /ready for leaked secrets; it
        // has no key of its own (auth is tested in security_test.cpp).
        "--api-auth=off",
        "--kafka-bootstrap-servers=127.0.0.1:1", "--max-restarts=1000",
        "--restart-backoff-initial-ms=100", "--restart-backoff-max-ms=1000",
        "--log-format=json", "--http-address=127.0.0.1",
        "--http-port=" + std::to_string(http_port),
        "--metrics-port=" + std::to_string(ces::test::free_tcp_port())},
      o);
    return std::make_pair(std::move(sink), http_port);
  };
  SECTION("a refused secret property: the error names it, not its value") {
    // librdkafka refuses sasl.jaas.config (Java syntax): the start stops
    // with exit 2 and one line naming the property.
    auto started = start(props);
    auto& sink = started.first;
    INFO(sink->describe());
    auto st = sink->wait_exit(30s);
    REQUIRE(st);
    CHECK(st->exited);
    CHECK(st->code == 2);
    auto log = sink->stderr_text();
    CHECK_THAT(log, Catch::Contains("\"event\":\"starting\""));
    CHECK_THAT(log, Catch::Contains("postgres:***@"));
    CHECK_THAT(log, Catch::Contains("sasl.jaas.config=***"));
    CHECK_THAT(log, Catch::Contains("\"event\":\"kafka_config_invalid\""));
    CHECK_THAT(log, Catch::Contains("invalid Kafka property sasl.jaas.config "
                                    "(value not shown)"));
    CHECK_FALSE(shows_secret(log + sink->stdout_text()));
  }
  SECTION("/supervision and /ready while the consumer keeps failing") {
    // Consumers only: librdkafka refuses the consumer (max.poll.interval.ms
    // below session.timeout.ms) and accepts the replay producer, so the API
    // stays up and shows the CONSUMER's crash reason.
    auto started = start(
      "sasl.password=E2Ec3,ssl.key.password=E2Ed4,max.poll.interval.ms=1000");
    auto& sink = started.first;
    auto http_port = started.second;
    INFO(sink->describe());
    REQUIRE(sink->wait_for_line(ces::test::stream::err, "actor_crash", 30s));
    ces::test::http_response supervision;
    CHECK(eventually(
      [&] {
        supervision = ces::test::http_get("127.0.0.1", http_port,
                                          "/supervision");
        return supervision.status == 200
               && supervision.body.find("max.poll.interval.ms")
                    != std::string::npos;
      },
      20s));
    INFO("/supervision: " << supervision.body);
    CHECK_FALSE(shows_secret(supervision.body));
    ces::test::http_response ready;
    CHECK(eventually(
      [&] {
        ready = ces::test::http_get("127.0.0.1", http_port, "/ready");
        return ready.status == 503
               && ready.body.find("max.poll.interval.ms") != std::string::npos;
      },
      20s));
    INFO("/ready: " << ready.body);
    CHECK_FALSE(shows_secret(ready.body));
    sink->stop();
    auto log = sink->stderr_text();
    CHECK_THAT(log, Catch::Contains("sasl.password=***"));
    CHECK_FALSE(shows_secret(log + sink->stdout_text()));
  }
}

TEST_CASE("a TLS certificate that cannot serve stops the start with exit 2",
          "[e2e]") {
  ces::test::test_pki pki;
  std::string err, out;
  auto missing = pki.dir + "/missing.pem";
  // No database is reached: the files are checked before anything starts.
  auto st = run_sink_on("postgresql://u@127.0.0.1:1/db",
                        {"--http-tls-cert-file=" + missing,
                         "--http-tls-key-file=" + pki.server_key},
                        err, out);
  CHECK(st.exited);
  CHECK(st.code == 2);
  CHECK(err.find("\"event\":\"http_tls_invalid\"") != std::string::npos);
  CHECK(err.find(missing) != std::string::npos);
  // A key that does not match: named, and no key material in the log.
  st = run_sink_on("postgresql://u@127.0.0.1:1/db",
                   {"--http-tls-cert-file=" + pki.server_cert,
                    "--http-tls-key-file=" + pki.other_key},
                   err, out);
  CHECK(st.code == 2);
  CHECK(err.find(pki.other_key) != std::string::npos);
  CHECK(err.find("PRIVATE KEY") == std::string::npos);
  auto key = ces::test::read_file(pki.other_key);
  auto body = key.substr(key.find('\n') + 1, 40);
  CHECK(err.find(body) == std::string::npos);
}

TEST_CASE("HTTPS: the operator API over TLS answers curl --cacert",
          "[e2e]") {
  ces::test::test_pki pki;
  world w{{"leads"}, 1};
  auto sink = w.start_sink({"--http-tls-cert-file=" + pki.server_cert,
                            "--http-tls-key-file=" + pki.server_key});
  auto url = "https://127.0.0.1:" + std::to_string(w.http_port()) + "/health";
  auto r = ces::test::curl({"--cacert", pki.ca_cert, "-H",
                            "X-Request-Id: e2e-tls-1", url});
  INFO(r.stderr_text << "\n" << sink.describe());
  CHECK(r.exit_code == 0);
  CHECK(r.status == 200);
  CHECK(r.header("x-request-id") == "e2e-tls-1");
  // Not without the CA, not over plain HTTP.
  CHECK(ces::test::curl({url}).exit_code == 60);
  CHECK(ces::test::http_get("127.0.0.1", w.http_port(), "/health", 3s).status
        == 0);
  auto log = sink.stderr_text();
  CHECK(log.find("\"event\":\"starting\"") != std::string::npos);
  CHECK(log.find("\"tls\":\"on\"") != std::string::npos);
  auto stopped = sink.stop();
  CHECK(stopped.success());
}
