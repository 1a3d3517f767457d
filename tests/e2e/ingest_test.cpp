// End-to-end: the real binary, a real PostgreSQL, the mock broker, a real
// Kafka producer. Exactly-once into the journal, across crashes.
#include "tests/e2e/harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

using namespace ces::e2e;

namespace {

const std::vector<std::string> crm_topics = {"apexflow.leads.created",
                                             "apexflow.jobs.created"};

std::map<coords, int> as_counts(const std::vector<manifest_entry>& m,
                                bool (*keep)(const manifest_entry&)) {
  std::map<coords, int> result;
  for (auto& e : m)
    if (keep(e))
      ++result[e.at];
  return result;
}

bool is_ok(const manifest_entry& e) {
  return e.kind == "ok";
}

bool is_poison(const manifest_entry& e) {
  return e.kind != "ok";
}

/// Coordinates seen more than once.
size_t duplicates(const std::map<coords, int>& xs) {
  size_t n = 0;
  for (auto& [c, k] : xs)
    n += k > 1 ? 1 : 0;
  return n;
}

} // namespace

TEST_CASE("every produced event is journalled once, with its coordinates",
          "[e2e]") {
  world w{crm_topics, 4};
  auto sink = w.start_sink();
  auto manifest = w.produce({"--count", "4000", "--header-tenant-every", "50"});
  REQUIRE(manifest.size() == 4000);
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= 4000; },
    60s));
  auto journal = w.journal_coords();
  CHECK(journal.size() == 4000);
  CHECK(duplicates(journal) == 0);
  CHECK(journal == as_counts(manifest, is_ok));
  // All 8 partitions were used and every row has its tenant, key and time.
  CHECK(w.count("select count(distinct (topic, partition)) from event_journal")
        == 8);
  CHECK(w.count("select count(*) from event_journal where tenant_id !~ "
                "'^tenant-[0-9]+$' or key is null or kafka_timestamp is null "
                "or replay_of is not null")
        == 0);
  // The payload's tenant wins; header-only events took the header's.
  CHECK(w.count("select count(*) from event_journal where payload ? "
                "'tenant_id' and payload->>'tenant_id' <> tenant_id")
        == 0);
  CHECK(w.count("select count(*) from event_journal where not payload ? "
                "'tenant_id'")
        == 4000 / 50);
  // The stored offsets sit right after the last journalled record.
  std::map<std::pair<std::string, int32_t>, int64_t> expect_next;
  for (auto& e : manifest) {
    auto& [t, p, o] = e.at;
    auto& n = expect_next[{t, p}];
    n = std::max(n, o + 1);
  }
  for (auto& r : w.rows("select topic, partition, next_offset from "
                        "journal_offsets"))
    CHECK(expect_next[{r[0], std::stoi(r[1])}] == std::stoll(r[2]));
  CHECK(w.count("select count(*) from journal_offsets") == 8);
  // Metrics agree, and the exposition passes promtool.
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  REQUIRE(m.status == 200);
  auto persisted
    = metric(m.body,
             "crm_events_persisted_total{topic=\"apexflow.leads.created\"}")
      + metric(m.body,
               "crm_events_persisted_total{topic=\"apexflow.jobs.created\"}");
  CHECK(persisted == 4000);
  if (std::system("command -v promtool >/dev/null 2>&1") == 0) {
    auto path = w.temp_path("metrics.txt");
    {
      std::ofstream out{path};
      out << m.body;
    }
    CHECK(std::system(("promtool check metrics < " + path).c_str()) == 0);
  }
  // SIGTERM: a clean stop, exit 0, within a few seconds.
  auto t0 = std::chrono::steady_clock::now();
  REQUIRE(sink.signal(SIGTERM));
  auto st = sink.wait_exit(10s);
  REQUIRE(st);
  CHECK(st->success());
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  CHECK(sink.stderr_text().find("\"event\":\"shutdown_complete\"")
        != std::string::npos);
}

TEST_CASE("kill -9 mid-stream and restart: still exactly once", "[e2e]") {
  world w{crm_topics, 4};
  const long long total = 30000;
  std::string manifest_path;
  auto producer = w.start_producer(
    {"--count", std::to_string(total), "--rate", "6000"}, manifest_path);
  auto sink = w.start_sink();
  // Two crashes at different points of the stream.
  for (long long mark : {4000LL, 14000LL}) {
    REQUIRE(eventually(
      [&] { return w.count("select count(*) from event_journal") >= mark; },
      60s));
    auto st = sink.kill9();
    CHECK(st.signaled);
    sink = w.start_sink();
  }
  auto pst = producer.wait_exit(120s);
  REQUIRE(pst);
  REQUIRE(pst->success());
  auto manifest = read_manifest(manifest_path);
  REQUIRE(manifest.size() == static_cast<size_t>(total));
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= total; },
    90s));
  // Give a would-be duplicate time to show up before judging.
  std::this_thread::sleep_for(1s);
  auto journal = w.journal_coords();
  INFO("journal rows " << journal.size());
  CHECK(duplicates(journal) == 0);
  CHECK(journal == as_counts(manifest, is_ok));
  CHECK(w.count("select count(*) from event_journal") == total);
  sink.stop();
}

TEST_CASE("poison records are dead-lettered and the stream goes on",
          "[e2e]") {
  world w{crm_topics, 4};
  auto sink = w.start_sink();
  auto manifest = w.produce({"--count", "700", "--poison-every", "7"});
  // A few oversized values (the default limit is 1 MiB), then more good
  // events behind them.
  auto big = w.produce(
    // Sequence numbers 1000..1007: 4 poison records, the last one too_large.
    {"--count", "8", "--poison-every", "2", "--oversize", "--start-index",
     "1000"});
  auto tail = w.produce({"--count", "300", "--start-index", "2000"});
  manifest.insert(manifest.end(), big.begin(), big.end());
  manifest.insert(manifest.end(), tail.begin(), tail.end());
  auto ok = as_counts(manifest, is_ok);
  auto bad = as_counts(manifest, is_poison);
  REQUIRE(bad.size() > 90);
  REQUIRE(eventually(
    [&] {
      return w.count("select (select count(*) from event_journal) + (select "
                     "count(*) from event_dlq)")
             >= static_cast<long long>(manifest.size());
    },
    60s));
  CHECK(w.journal_coords() == ok);
  CHECK(w.dlq_coords() == bad);
  // Each dead letter carries the class the producer meant.
  std::map<coords, std::string> classes;
  for (auto& r : w.rows("select topic, partition, \"offset\", error_class, "
                        "error, status, attempts from event_dlq"))
    classes[coords{r[0], std::stoi(r[1]), std::stoll(r[2])}] = r[3];
  std::set<std::string> seen;
  for (auto& e : manifest)
    if (is_poison(e)) {
      CHECK(classes[e.at] == e.kind);
      seen.insert(e.kind);
    }
  CHECK(seen
        == std::set<std::string>{"invalid_json", "missing_tenant",
                                 "empty_value", "too_large"});
  CHECK(w.count("select count(*) from event_dlq where status <> 'pending' or "
                "attempts <> 1 or error = ''")
        == 0);
  // Raw payloads are kept as received (invalid JSON included).
  CHECK(w.count("select count(*) from event_dlq where error_class = "
                "'invalid_json' and payload is null")
        == 0);
  auto m = ces::test::http_get("127.0.0.1", w.metrics_port(), "/metrics");
  double dlq_total = 0;
  for (auto& t : crm_topics)
    for (auto r : {"invalid_json", "missing_tenant", "empty_value", "too_large"})
      dlq_total += std::max(0.0, metric(m.body, "crm_events_dlq_total{reason=\""
                                                  + std::string{r}
                                                  + "\",topic=\"" + t + "\"}"));
  CHECK(dlq_total == static_cast<double>(bad.size()));
  CHECK(sink.stop().success());
}

TEST_CASE("a new consumer group continues from the journal's position",
          "[e2e][fence]") {
  // Group A journals 10k events and stops; group B (a migration, a canary)
  // starts from `earliest` on the same cluster: the journal knows every
  // record already, and journals only what is new.
  world w{crm_topics, 4};
  w.group = "e2e-group-a";
  auto sink = w.start_sink();
  auto manifest = w.produce({"--count", "10000"});
  REQUIRE(manifest.size() == 10000);
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= 10000; },
    90s));
  REQUIRE(sink.stop().success());
  w.group = "e2e-group-b";
  sink = w.start_sink();
  auto more = w.produce({"--count", "500", "--start-index", "10000"});
  manifest.insert(manifest.end(), more.begin(), more.end());
  // The new events are on every partition, behind the old ones: once they
  // are in, group B has read everything it would have re-journalled.
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= 10500; },
    90s));
  std::this_thread::sleep_for(1s); // a late duplicate would show up here
  auto journal = w.journal_coords();
  CHECK(w.count("select count(*) from event_journal") == 10500);
  CHECK(duplicates(journal) == 0);
  CHECK(journal == as_counts(manifest, is_ok));
  // One fence per partition, keyed by the broker's cluster id, which both
  // starts saw the same.
  CHECK(w.count("select count(*) from journal_offsets") == 8);
  CHECK(w.count("select count(distinct cluster_id) from journal_offsets")
        == 1);
  auto log = sink.stderr_text();
  std::vector<std::string> ids;
  std::istringstream lines{log};
  for (std::string line; std::getline(lines, line);)
    if (line.find("\"event\":\"offset_fence\"") != std::string::npos)
      ids.push_back(line);
  REQUIRE(ids.size() == 2);
  auto cluster = w.value("select min(cluster_id) from journal_offsets");
  for (auto& line : ids)
    CHECK(line.find("\"cluster_id\":\"" + cluster + "\"")
          != std::string::npos);
  CHECK(sink.stop().success());
}

TEST_CASE("the first start after the upgrade adopts the group's offsets",
          "[e2e][fence]") {
  // What migration 0003 leaves of a previous release: the offsets of group
  // `old` in legacy_group_offsets, without a cluster id (and no offsets of
  // that group committed to Kafka, e.g. expired). Its first start asks the
  // broker for the cluster id and adopts them: nothing is journalled again.
  world w{crm_topics, 2};
  auto sink = w.start_sink();
  auto manifest = w.produce({"--count", "2000"});
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= 2000; },
    90s));
  REQUIRE(sink.stop().success());
  REQUIRE(w.count("with moved as (delete from journal_offsets returning"
                  " topic, partition, next_offset), ins as (insert into"
                  " legacy_group_offsets (group_id, topic, partition,"
                  " next_offset) select 'old', topic, partition, next_offset"
                  " from moved returning 1) select count(*) from ins")
          == 4);
  w.group = "old";
  sink = w.start_sink();
  auto more = w.produce({"--count", "100", "--start-index", "2000"});
  manifest.insert(manifest.end(), more.begin(), more.end());
  REQUIRE(eventually(
    [&] { return w.count("select count(*) from event_journal") >= 2100; },
    90s));
  std::this_thread::sleep_for(1s); // a late duplicate would show up here
  CHECK(w.count("select count(*) from event_journal") == 2100);
  CHECK(duplicates(w.journal_coords()) == 0);
  CHECK(w.count("select count(*) from legacy_group_offsets") == 0);
  CHECK(sink.stderr_text().find("\"event\":\"legacy_offsets_adopted\"")
        != std::string::npos);
  CHECK(sink.stop().success());
}
