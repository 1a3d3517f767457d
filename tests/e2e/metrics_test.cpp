// End-to-end: the issue-12 metrics on the real binary. Consumer lag equals
// the records the broker holds past the journal while the persister is held
// back (a SHARE lock on journal_offsets), and 0 once everything is
// journalled; the event lag histogram counts the journalled rows (replays
// excluded); the process_* metrics are the sink's own; the job metrics count
// a bulk replay job.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>
#include <pqxx/pqxx>

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace ces::e2e;
using json = nlohmann::json;

namespace {

const std::string topic = "apexflow.leads.created";

std::string scrape(world& w) {
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  REQUIRE(m.status == 200);
  return m.body;
}

std::string lag_series(int32_t partition) {
  return "crm_consumer_lag_records{partition=\"" + std::to_string(partition)
         + "\",topic=\"" + topic + "\"}";
}

/// Sum of crm_consumer_lag_records over `partitions` partitions of the
/// topic; -1 if a series is missing.
double total_lag(const std::string& text, int partitions) {
  double sum = 0;
  for (int32_t p = 0; p < partitions; ++p) {
    auto v = metric(text, lag_series(p));
    if (v < 0)
      return -1;
    sum += v;
  }
  return sum;
}

/// A `Name: value` line of /proc/<pid>/status, value as a number (-1: none).
double proc_status(pid_t pid, const std::string& name) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  for (std::string l; std::getline(in, l);)
    if (l.rfind(name + ":", 0) == 0)
      return std::stod(l.substr(name.size() + 1));
  return -1;
}

/// The soft "Max open files" of /proc/<pid>/limits (-1: none).
double max_open_files(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/limits"};
  for (std::string l; std::getline(in, l);)
    if (l.rfind("Max open files", 0) == 0) {
      std::istringstream fields{l.substr(14)};
      double soft = -1;
      fields >> soft;
      return soft;
    }
  return -1;
}

double open_fds(pid_t pid) {
  double n = 0;
  for (auto& e : std::filesystem::directory_iterator{
         "/proc/" + std::to_string(pid) + "/fd"}) {
    (void) e;
    ++n;
  }
  return n;
}

} // namespace

TEST_CASE("consumer lag, event lag, process and job metrics", "[e2e]") {
  const int partitions = 4;
  world w{{topic}, partitions};
  const long long n = 2000;
  {
    // A first run creates the schema, then stops (nothing to consume).
    auto first = w.start_sink();
    auto st = first.stop();
    REQUIRE(st.success());
  }
  // The broker holds n records before the sink starts again.
  w.produce({"--topics", topic, "--count", std::to_string(n), "--quiet"});
  REQUIRE(w.broker_messages() == n);
  auto hw = w.high_watermarks();

  // Hold the persisters back: journal_offsets can be read (the stored
  // offsets at assignment) but not written (each batch's first statement
  // waits for the lock).
  pqxx::connection blocker{w.db_url()};
  pqxx::work hold{blocker};
  hold.exec("LOCK TABLE journal_offsets IN SHARE MODE");

  auto sink = w.start_sink();
  // Every partition was fetched (so its high watermark is known) and
  // nothing was journalled: the lag is the whole backlog, per partition.
  std::string text;
  REQUIRE(eventually(
    [&] {
      text = scrape(w);
      return total_lag(text, partitions) == n;
    },
    30s));
  for (int32_t p = 0; p < partitions; ++p)
    CHECK(metric(text, lag_series(p)) == hw[{topic, p}]);
  CHECK(w.count("select count(*) from event_journal") == 0);
  CHECK(metric(text, "crm_event_lag_seconds_count") == 0);

  // Let go: everything is journalled and the lag drops to 0 on every
  // partition (the series stay).
  hold.abort();
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") == n; },
    60s));
  REQUIRE(eventually(
    [&] {
      text = scrape(w);
      return total_lag(text, partitions) == 0;
    },
    30s));
  for (int32_t p = 0; p < partitions; ++p)
    CHECK(metric(text, lag_series(p)) == 0);
  // One event age per journalled row; the records waited at least while
  // the journal was locked, never an hour.
  CHECK(metric(text, "crm_event_lag_seconds_count") == n);
  CHECK(metric(text, "crm_event_lag_seconds_bucket{le=\"0.01\"}") < n);
  CHECK(metric(text, "crm_event_lag_seconds_bucket{le=\"3600\"}") == n);
  CHECK(metric(text, "crm_event_lag_seconds_sum") > 0);

  // The process metrics are the sink's.
  auto pid = sink.pid();
  auto rss = metric(text, "process_resident_memory_bytes");
  auto vm_rss = proc_status(pid, "VmRSS") * 1024;
  REQUIRE(vm_rss > 0);
  CHECK(rss > vm_rss / 2);
  CHECK(rss < vm_rss * 2);
  CHECK(metric(text, "process_virtual_memory_bytes") >= rss);
  CHECK(metric(text, "process_max_fds") == max_open_files(pid));
  auto fds = metric(text, "process_open_fds");
  auto actual_fds = open_fds(pid);
  CHECK(fds > 5);
  CHECK(fds > actual_fds / 2);
  CHECK(fds < actual_fds * 2);
  auto started = metric(text, "process_start_time_seconds");
  auto now = static_cast<double>(::time(nullptr));
  CHECK(started <= now + 2); // btime has a 1 s resolution
  CHECK(started > now - 600); // this test started it
  CHECK(metric(text, "process_cpu_seconds_total") > 0);

  // Job metrics: zero for every kind and status, then a bulk replay job.
  for (auto kind : {"replay", "dlq_retry", "dlq_discard"})
    for (auto status : {"succeeded", "failed", "cancelled"})
      CHECK(metric(text, std::string{"crm_jobs_finished_total{kind=\""} + kind
                           + "\",status=\"" + status + "\"}")
            == 0);
  CHECK(metric(text, "crm_jobs_running") == 0);
  auto res = ces::test::http_request(
    "POST", "127.0.0.1", w.http_port(), "/replays",
    json{{"filter", {{"topic", topic}, {"replays", "exclude"}}}}.dump(),
    "application/json", 20s);
  INFO(res.body);
  REQUIRE(res.status == 202);
  auto id = json::parse(res.body)["job_id"].get<int64_t>();
  REQUIRE(eventually(
    [&] {
      auto j = ces::test::http_get("127.0.0.1", w.http_port(),
                                   "/jobs/" + std::to_string(id));
      return j.status == 200 && json::parse(j.body)["status"] == "succeeded";
    },
    120s));
  text = scrape(w);
  CHECK(metric(text,
               R"(crm_jobs_finished_total{kind="replay",status="succeeded"})")
        == 1);
  CHECK(metric(text,
               R"(crm_jobs_finished_total{kind="replay",status="failed"})")
        == 0);
  CHECK(metric(text, "crm_jobs_running") == 0);

  // The job's republished events are journalled again (as replays) and
  // consumed: the lag returns to 0, and the event lag histogram still
  // counts only the original rows (replays are excluded).
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") == 2 * n; },
    120s));
  REQUIRE(eventually(
    [&] {
      text = scrape(w);
      return total_lag(text, partitions) == 0
             && metric(text, "crm_events_persisted_total{topic=\"" + topic
                               + "\"}")
                  == 2 * n;
    },
    30s));
  CHECK(w.broker_messages() == 2 * n);
  CHECK(metric(text, "crm_event_lag_seconds_count") == n);
}
