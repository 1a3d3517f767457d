// ces::metrics: names, labels, values, help strings, thread safety, the HTTP
// exposer, and `promtool check metrics` on the exposition text.
#include "api/metrics.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

/// The value of the sample `series` (name plus labels as serialized), or
/// -1 when absent.
double sample(const std::string& text, const std::string& series) {
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(series + ' ', 0) == 0)
      return std::stod(l.substr(series.size() + 1));
  return -1;
}

bool text_has_no_build_info(const std::string& text) {
  return text.find("crm_build_info{") == std::string::npos;
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in{text};
  for (std::string l; std::getline(in, l);)
    if (l == line)
      return true;
  return false;
}

/// GET http://127.0.0.1:port/path, the whole response ("" on failure).
std::string http_get(uint16_t port, const std::string& path) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    return {};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string response;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    auto req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, req.data(), req.size(), 0)
        == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof(buf), 0)) > 0;)
        response.append(buf, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return response;
}

std::string find_on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr)
    return {};
  std::istringstream dirs{path};
  for (std::string dir; std::getline(dirs, dir, ':');) {
    auto candidate = (dir.empty() ? std::string{"."} : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate;
  }
  return {};
}

/// Runs `promtool check metrics` on `text`: exit status and output.
std::pair<int, std::string> promtool_check(const std::string& promtool,
                                           const std::string& text) {
  auto file = std::filesystem::temp_directory_path()
              / ("ces_metrics_" + std::to_string(::getpid()) + ".prom");
  {
    std::ofstream f{file};
    f << text;
  }
  auto cmd = "'" + promtool + "' check metrics < '" + file.string()
             + "' 2>&1";
  std::string output;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[1024];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), p)) > 0;)
    output.append(buf, n);
  int status = ::pclose(p);
  std::filesystem::remove(file);
  REQUIRE(WIFEXITED(status));
  return {WEXITSTATUS(status), output};
}

/// A registry with every family and some data in it.
void fill(ces::metrics& m) {
  m.declare_dlq_reasons({"invalid_json"});
  m.declare_topics({"apexflow.leads.created", "apexflow.jobs.created"});
  m.declare_dlq_reasons({"too_large"});
  m.declare_actors({"consumer", "persister"});
  m.add_ingested("apexflow.leads.created", 10);
  m.add_persisted("apexflow.leads.created", 8);
  m.add_dlq("apexflow.leads.created", "invalid_json", 1);
  m.add_skipped("apexflow.leads.created", 1);
  m.add_actor_restart("persister");
  m.observe_batch_persist(0.004, 8);
  m.set_in_flight_batches(2);
  m.set_dlq_pending(1);
  m.declare_http_routes({"health", "replay"});
  m.observe_http_request("replay", 200, 0.05);
  m.add_replay("apexflow.jobs.created", "replayed");
  m.add_replay_throttled("tenant-01");
  m.set_consumer_lag({{"apexflow.leads.created", 0, 12}});
  m.add_offsets_lost("apexflow.leads.created", 2, 40);
  m.observe_event_lag({0.2, 1.5});
  m.add_job_finished("replay", "succeeded");
  m.set_jobs_running(1);
}

} // namespace

TEST_CASE("declared series exist with value 0", "[metrics]") {
  ces::metrics m;
  m.declare_topics({"t1", "t2"});
  m.declare_dlq_reasons({"invalid_json", "too_large"});
  m.declare_actors({"consumer", "persister"});
  auto text = m.text();
  for (auto t : {"t1", "t2"}) {
    auto topic = std::string{"{topic=\""} + t + "\"}";
    CHECK(sample(text, "crm_events_ingested_total" + topic) == 0);
    CHECK(sample(text, "crm_events_persisted_total" + topic) == 0);
    CHECK(sample(text, "crm_events_skipped_total" + topic) == 0);
    CHECK(sample(text, "crm_replay_duplicates_total" + topic) == 0);
    for (auto r : {"invalid_json", "too_large"})
      CHECK(sample(text, std::string{"crm_events_dlq_total{reason=\""} + r
                           + "\",topic=\"" + t + "\"}")
            == 0);
  }
  CHECK(sample(text, "crm_actor_restarts_total{actor=\"consumer\"}") == 0);
  CHECK(sample(text, "crm_actor_crashes_total{actor=\"consumer\"}") == 0);
  CHECK(sample(text, "crm_actor_restarts_total{actor=\"persister\"}") == 0);
  CHECK(sample(text, "crm_batches_in_flight") == 0);
  CHECK(sample(text, "crm_dlq_pending") == 0);
  CHECK(sample(text, "crm_batch_persist_seconds_count") == 0);
  CHECK(sample(text, "crm_batch_records_count") == 0);
}

TEST_CASE("counters, gauges and histograms carry the right values",
          "[metrics]") {
  ces::metrics m;
  m.add_ingested("a", 3);
  m.add_ingested("a", 4);
  m.add_ingested("b", 1);
  m.add_persisted("a", 6);
  m.add_dlq("a", "invalid_json", 1);
  m.add_dlq("a", "too_large", 2);
  m.add_skipped("b", 5);
  m.add_replay_duplicates("b", 2);
  m.add_replay_duplicates("b", 1);
  m.add_actor_restart("persister");
  m.add_actor_restart("persister");
  m.set_in_flight_batches(2);
  m.set_in_flight_batches(1);
  m.set_dlq_pending(17);
  m.set_db_up(true);
  m.set_db_up(false);
  m.observe_batch_persist(0.0005, 1);
  m.observe_batch_persist(0.02, 300);
  m.observe_batch_persist(30.0, 5000);
  auto text = m.text();
  CHECK(sample(text, "crm_events_ingested_total{topic=\"a\"}") == 7);
  CHECK(sample(text, "crm_events_ingested_total{topic=\"b\"}") == 1);
  CHECK(sample(text, "crm_events_persisted_total{topic=\"a\"}") == 6);
  CHECK(sample(text, "crm_events_persisted_total{topic=\"b\"}") == -1);
  CHECK(sample(text,
               "crm_events_dlq_total{reason=\"invalid_json\",topic=\"a\"}")
        == 1);
  CHECK(sample(text, "crm_events_dlq_total{reason=\"too_large\",topic=\"a\"}")
        == 2);
  CHECK(sample(text, "crm_events_skipped_total{topic=\"b\"}") == 5);
  CHECK(sample(text, "crm_replay_duplicates_total{topic=\"b\"}") == 3);
  CHECK(sample(text, "crm_actor_restarts_total{actor=\"persister\"}") == 2);
  CHECK(sample(text, "crm_batches_in_flight") == 1);
  CHECK(sample(text, "crm_db_up") == 0);
  CHECK(sample(text, "crm_dlq_pending") == 17);
  // Histogram: 1 ms .. 10 s buckets.
  CHECK(sample(text, "crm_batch_persist_seconds_count") == 3);
  CHECK(sample(text, "crm_batch_persist_seconds_sum") == Approx(30.0205));
  CHECK(sample(text, "crm_batch_persist_seconds_bucket{le=\"0.001\"}") == 1);
  CHECK(sample(text, "crm_batch_persist_seconds_bucket{le=\"0.025\"}") == 2);
  CHECK(sample(text, "crm_batch_persist_seconds_bucket{le=\"10\"}") == 2);
  CHECK(sample(text, "crm_batch_persist_seconds_bucket{le=\"+Inf\"}") == 3);
  CHECK(sample(text, "crm_batch_records_count") == 3);
  CHECK(sample(text, "crm_batch_records_sum") == 5301);
  CHECK(sample(text, "crm_batch_records_bucket{le=\"1\"}") == 1);
  CHECK(sample(text, "crm_batch_records_bucket{le=\"500\"}") == 2);
  CHECK(sample(text, "crm_batch_records_bucket{le=\"5000\"}") == 3);
}

TEST_CASE("every family has a type and a help string", "[metrics]") {
  ces::metrics m;
  fill(m);
  auto text = m.text();
  std::vector<std::pair<std::string, std::string>> families = {
    {"crm_events_ingested_total", "counter"},
    {"crm_events_persisted_total", "counter"},
    {"crm_events_dlq_total", "counter"},
    {"crm_events_skipped_total", "counter"},
    {"crm_replay_duplicates_total", "counter"},
    {"crm_actor_restarts_total", "counter"},
    {"crm_actor_crashes_total", "counter"},
    {"crm_batch_persist_seconds", "histogram"},
    {"crm_batch_records", "histogram"},
    {"crm_batches_in_flight", "gauge"},
    {"crm_dlq_pending", "gauge"},
    {"crm_db_up", "gauge"},
    {"crm_http_requests_total", "counter"},
    {"crm_http_request_seconds", "histogram"},
    {"crm_replays_total", "counter"},
    {"crm_replays_throttled_total", "counter"},
    {"crm_consumer_lag_records", "gauge"},
    {"crm_kafka_offsets_lost_total", "counter"},
    {"crm_event_lag_seconds", "histogram"},
    {"crm_jobs_finished_total", "counter"},
    {"crm_jobs_running", "gauge"},
    {"crm_journal_partitions", "gauge"},
    {"crm_maintenance_runs_total", "counter"},
    {"crm_retention_deleted_total", "counter"},
    {"process_resident_memory_bytes", "gauge"},
    {"process_virtual_memory_bytes", "gauge"},
    {"process_cpu_seconds_total", "counter"},
    {"process_open_fds", "gauge"},
    {"process_max_fds", "gauge"},
    {"process_start_time_seconds", "gauge"},
  };
  for (auto& [name, type] : families) {
    CHECK(has_line(text, "# TYPE " + name + " " + type));
    CHECK_THAT(text, Catch::Contains("# HELP " + name + " "));
  }
  // No family without help.
  std::istringstream in{text};
  std::string prev;
  int types = 0;
  for (std::string l; std::getline(in, l); prev = l)
    if (l.rfind("# TYPE ", 0) == 0) {
      ++types;
      auto name = l.substr(7, l.find(' ', 7) - 7);
      CHECK(prev.rfind("# HELP " + name + " ", 0) == 0);
      CHECK(prev.size() > 8 + name.size());
    }
  CHECK(types == static_cast<int>(families.size()));
}

TEST_CASE("offsets lost count records per topic and partition",
          "[metrics]") {
  ces::metrics m;
  m.add_offsets_lost("apexflow.leads.created", 2, 40);
  m.add_offsets_lost("apexflow.leads.created", 2, 2);
  m.add_offsets_lost("apexflow.deals.won", 0, 1);
  auto text = m.text();
  CHECK(sample(text, "crm_kafka_offsets_lost_total{partition=\"2\","
                     "topic=\"apexflow.leads.created\"}")
        == 42);
  CHECK(sample(text, "crm_kafka_offsets_lost_total{partition=\"0\","
                     "topic=\"apexflow.deals.won\"}")
        == 1);
}

TEST_CASE("declared topics get zero series, patterns do not",
          "[metrics]") {
  ces::metrics m;
  m.declare_topics({"^apexflow\\..*", "crm.audit"});
  auto text = m.text();
  CHECK(sample(text, "crm_events_ingested_total{topic=\"crm.audit\"}") == 0);
  CHECK(text.find("topic=\"^") == std::string::npos);
}

TEST_CASE("operator API metrics", "[metrics]") {
  ces::metrics m;
  m.declare_http_routes({"health", "events_latest"});
  auto text = m.text();
  CHECK(sample(text, "crm_http_request_seconds_count{route=\"health\"}") == 0);
  CHECK(sample(text, "crm_http_request_seconds_count{route=\"events_latest\"}")
        == 0);
  m.observe_http_request("replay", 200, 0.004);
  m.observe_http_request("replay", 200, 0.2);
  m.observe_http_request("replay", 503, 40.0);
  m.observe_http_request("unmatched", 404, 0.0001);
  m.add_replay("apexflow.jobs.created", "replayed");
  m.add_replay("apexflow.jobs.created", "replayed");
  m.add_replay("apexflow.jobs.created", "timeout");
  m.add_replay_throttled("t1");
  m.add_replay_throttled("t1");
  m.add_replay_throttled("t2");
  text = m.text();
  CHECK(sample(text, "crm_replays_throttled_total{tenant=\"t1\"}") == 2);
  CHECK(sample(text, "crm_replays_throttled_total{tenant=\"t2\"}") == 1);
  CHECK(sample(text, "crm_http_requests_total{code=\"200\",route=\"replay\"}")
        == 2);
  CHECK(sample(text, "crm_http_requests_total{code=\"503\",route=\"replay\"}")
        == 1);
  CHECK(sample(text,
               "crm_http_requests_total{code=\"404\",route=\"unmatched\"}")
        == 1);
  CHECK(sample(text, "crm_http_request_seconds_count{route=\"replay\"}") == 3);
  CHECK(sample(text,
               "crm_http_request_seconds_bucket{route=\"replay\",le=\"0.005\"}")
        == 1);
  CHECK(sample(text,
               "crm_http_request_seconds_bucket{route=\"replay\",le=\"30\"}")
        == 2);
  CHECK(sample(text,
               "crm_http_request_seconds_bucket{route=\"replay\",le=\"+Inf\"}")
        == 3);
  CHECK(sample(text, "crm_replays_total{outcome=\"replayed\","
                     "topic=\"apexflow.jobs.created\"}")
        == 2);
  CHECK(sample(text, "crm_replays_total{outcome=\"timeout\","
                     "topic=\"apexflow.jobs.created\"}")
        == 1);
}

TEST_CASE("label values are escaped", "[metrics]") {
  ces::metrics m;
  m.add_ingested("we\"ird\\topic\n", 1);
  CHECK(sample(m.text(),
               "crm_events_ingested_total{topic=\"we\\\"ird\\\\topic\\n\"}")
        == 1);
}

TEST_CASE("concurrent updates are all counted", "[metrics]") {
  ces::metrics m;
  constexpr int threads = 4;
  constexpr int rounds = 5000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t)
    ts.emplace_back([&m, t] {
      auto topic = "t" + std::to_string(t % 2);
      for (int i = 0; i < rounds; ++i) {
        m.add_ingested(topic, 2);
        m.add_persisted("shared", 1);
        m.observe_batch_persist(0.01, 1);
        if (i % 100 == 0) {
          m.declare_topics({topic});
          (void) m.text();
        }
      }
    });
  for (auto& t : ts)
    t.join();
  auto text = m.text();
  CHECK(sample(text, "crm_events_ingested_total{topic=\"t0\"}")
        == 2.0 * rounds * threads / 2);
  CHECK(sample(text, "crm_events_ingested_total{topic=\"t1\"}")
        == 2.0 * rounds * threads / 2);
  CHECK(sample(text, "crm_events_persisted_total{topic=\"shared\"}")
        == rounds * threads);
  CHECK(sample(text, "crm_batch_persist_seconds_count") == rounds * threads);
}

TEST_CASE("expose serves /metrics and reports a taken port", "[metrics]") {
  ces::metrics m;
  CHECK(m.exposed_port() == 0);
  m.add_ingested("served", 42);
  m.expose("127.0.0.1", 0); // any free port
  auto port = m.exposed_port();
  REQUIRE(port != 0);
  auto response = http_get(port, "/metrics");
  CHECK_THAT(response, Catch::StartsWith("HTTP/1.1 200"));
  CHECK_THAT(response,
             Catch::Contains("crm_events_ingested_total{topic=\"served\"} 42"));
  // The process collector is served too.
  CHECK_THAT(response, Catch::Contains("\nprocess_resident_memory_bytes "));
  CHECK_THAT(response, Catch::Contains("\nprocess_open_fds "));
  CHECK_THROWS_AS(m.expose("127.0.0.1", 0), std::logic_error);
  ces::metrics other;
  try {
    other.expose("127.0.0.1", port);
    FAIL("expose on a taken port did not throw");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(),
               Catch::StartsWith("cannot serve metrics on 127.0.0.1:"
                                 + std::to_string(port)
                                 + ": port in use or address not available"));
  }
  CHECK(other.exposed_port() == 0);
}

TEST_CASE("promtool check metrics accepts the exposition", "[promtool]") {
  auto promtool = find_on_path("promtool");
  if (promtool.empty()) {
    // ctest reports exit code 77 as "Skipped" (SKIP_RETURN_CODE).
    std::cerr << "SKIPPED: promtool is not on PATH; install the Debian "
                 "package 'prometheus' to lint the metrics\n";
    std::exit(77);
  }
  ces::metrics m;
  fill(m);
  auto [status, output] = promtool_check(promtool, m.text());
  INFO("promtool output: " << output);
  CHECK(status == 0);
  CHECK(output.empty());
  // The check has teeth: a counter without _total and without help fails.
  auto [bad_status, bad_output] = promtool_check(
    promtool, "# TYPE crm_bad counter\ncrm_bad 1\n");
  CHECK(bad_status != 0);
  CHECK_THAT(bad_output, Catch::Contains("_total"));
}

TEST_CASE("crm_build_info names the running build", "[metrics]") {
  ces::metrics m;
  CHECK(text_has_no_build_info(m.text()));
  m.set_build_info("0.1.0", "1a2b3c4d5e6f");
  CHECK(sample(m.text(),
               R"(crm_build_info{revision="1a2b3c4d5e6f",version="0.1.0"})")
        == 1);
}

TEST_CASE("consumer lag: one series per assigned partition", "[metrics]") {
  ces::metrics m;
  auto series = [](const char* topic, int p) {
    return std::string{"crm_consumer_lag_records{partition=\""}
           + std::to_string(p) + "\",topic=\"" + topic + "\"}";
  };
  CHECK(sample(m.text(), series("a", 0)) == -1);
  m.set_consumer_lag({{"a", 0, 7}, {"a", 1, 0}, {"b", 3, -2}});
  auto text = m.text();
  CHECK(sample(text, series("a", 0)) == 7);
  CHECK(sample(text, series("a", 1)) == 0);
  CHECK(sample(text, series("b", 3)) == 0); // never negative
  // A rebalance took a/0 and b/3 away: their series go.
  m.set_consumer_lag({{"a", 1, 4}, {"a", 2, 1}});
  text = m.text();
  CHECK(sample(text, series("a", 0)) == -1);
  CHECK(sample(text, series("b", 3)) == -1);
  CHECK(sample(text, series("a", 1)) == 4);
  CHECK(sample(text, series("a", 2)) == 1);
  m.set_consumer_lag({});
  CHECK(m.text().find("crm_consumer_lag_records{") == std::string::npos);
}

TEST_CASE("event lag histogram: 10 ms .. 3600 s, one batch at a time",
          "[metrics]") {
  ces::metrics m;
  auto text = m.text();
  CHECK(sample(text, "crm_event_lag_seconds_count") == 0);
  m.observe_event_lag({});
  m.observe_event_lag({0.004, 0.01, 0.3, 5000.0, -1.0});
  m.observe_event_lag({2.0});
  text = m.text();
  CHECK(sample(text, "crm_event_lag_seconds_count") == 6);
  CHECK(sample(text, "crm_event_lag_seconds_sum") == Approx(5002.314));
  // -1 (producer clock ahead) counts as 0; le is inclusive.
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"0.01\"}") == 3);
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"0.25\"}") == 3);
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"0.5\"}") == 4);
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"2.5\"}") == 5);
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"3600\"}") == 5);
  CHECK(sample(text, "crm_event_lag_seconds_bucket{le=\"+Inf\"}") == 6);
}

TEST_CASE("job metrics start at zero for every kind and status",
          "[metrics]") {
  ces::metrics m;
  auto text = m.text();
  for (auto kind : {"replay", "dlq_retry", "dlq_discard"})
    for (auto status : {"succeeded", "failed", "cancelled"})
      CHECK(sample(text, std::string{"crm_jobs_finished_total{kind=\""} + kind
                           + "\",status=\"" + status + "\"}")
            == 0);
  CHECK(sample(text, "crm_jobs_running") == 0);
  m.set_jobs_running(1);
  m.add_job_finished("replay", "succeeded");
  m.add_job_finished("replay", "succeeded");
  m.add_job_finished("dlq_retry", "cancelled");
  m.set_jobs_running(0);
  text = m.text();
  CHECK(sample(text,
               R"(crm_jobs_finished_total{kind="replay",status="succeeded"})")
        == 2);
  CHECK(sample(text, "crm_jobs_finished_total{kind=\"dlq_retry\","
                     "status=\"cancelled\"}")
        == 1);
  CHECK(sample(text,
               R"(crm_jobs_finished_total{kind="replay",status="failed"})")
        == 0);
  CHECK(sample(text, "crm_jobs_running") == 0);
}

TEST_CASE("maintenance metrics start at zero and count", "[metrics]") {
  ces::metrics m;
  auto text = m.text();
  CHECK(sample(text, "crm_journal_partitions") == 0);
  for (auto outcome : {"ok", "failed"})
    CHECK(sample(text, std::string{"crm_maintenance_runs_total{outcome=\""}
                         + outcome + "\"}")
          == 0);
  for (auto table : {"event_journal", "event_dlq", "audit_log"})
    CHECK(sample(text, std::string{"crm_retention_deleted_total{table=\""}
                         + table + "\"}")
          == 0);
  m.set_journal_partitions(7);
  m.add_maintenance_run("ok");
  m.add_maintenance_run("ok");
  m.add_maintenance_run("failed");
  m.add_retention_deleted("event_journal", 1200);
  m.add_retention_deleted("event_dlq", 3);
  m.add_retention_deleted("event_dlq", 2);
  text = m.text();
  CHECK(sample(text, "crm_journal_partitions") == 7);
  CHECK(sample(text, R"(crm_maintenance_runs_total{outcome="ok"})") == 2);
  CHECK(sample(text, R"(crm_maintenance_runs_total{outcome="failed"})") == 1);
  CHECK(sample(text, R"(crm_retention_deleted_total{table="event_journal"})")
        == 1200);
  CHECK(sample(text, R"(crm_retention_deleted_total{table="event_dlq"})")
        == 5);
  CHECK(sample(text, R"(crm_retention_deleted_total{table="audit_log"})")
        == 0);
}

namespace {

/// A `Name:   value kB` line of /proc/self/status, in bytes (-1: absent).
double status_kb(const std::string& name) {
  std::ifstream in{"/proc/self/status"};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(name + ":", 0) == 0)
      return std::stod(l.substr(name.size() + 1)) * 1024;
  return -1;
}

double count_fds() {
  double n = 0;
  for (auto& e : std::filesystem::directory_iterator{"/proc/self/fd"}) {
    (void) e;
    ++n;
  }
  return n - 1; // the iterator's own descriptor
}

} // namespace

TEST_CASE("process metrics are this process's, read at scrape time",
          "[metrics]") {
  ces::metrics m;
  // Grow the heap by 64 MiB (touched), so RSS is clearly this process's.
  std::vector<char> ballast(64u << 20, 1);
  auto text = m.text();
  auto rss = sample(text, "process_resident_memory_bytes");
  auto vm_rss = status_kb("VmRSS");
  REQUIRE(vm_rss > 0);
  CHECK(rss >= vm_rss / 2);
  CHECK(rss <= vm_rss * 2);
  CHECK(rss > 64.0 * (1 << 20));
  auto vsz = sample(text, "process_virtual_memory_bytes");
  CHECK(vsz >= rss);
  CHECK(vsz == Approx(status_kb("VmSize")).epsilon(0.1));
  auto fds = sample(text, "process_open_fds");
  CHECK(fds >= 3);
  CHECK(fds == count_fds());
  rlimit lim{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &lim) == 0);
  CHECK(sample(text, "process_max_fds") == static_cast<double>(lim.rlim_cur));
  // Started before now, and not before this machine booted.
  auto start = sample(text, "process_start_time_seconds");
  auto now = static_cast<double>(::time(nullptr));
  CHECK(start <= now + 1);
  CHECK(start > now - 24 * 3600.0 * 365);
  // CPU time is a counter that moves: burn 100 ms of CPU.
  auto cpu = sample(text, "process_cpu_seconds_total");
  CHECK(cpu >= 0);
  auto began = std::clock();
  volatile double x = 0;
  while (std::clock() - began < CLOCKS_PER_SEC / 5)
    x = x + 1;
  CHECK(sample(m.text(), "process_cpu_seconds_total") > cpu);
  // A new descriptor shows at the next scrape.
  int fd = ::open("/proc/self/status", O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK(sample(m.text(), "process_open_fds") == fds + 1);
  ::close(fd);
  CHECK(ballast[12345] == 1);
}
