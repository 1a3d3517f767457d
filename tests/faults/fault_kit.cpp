#include "tests/faults/fault_kit.hpp"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

namespace ces::faults {

double seconds(clock_type::time_point from, clock_type::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

int soak_factor() {
  static const int factor = [] {
    auto v = std::getenv("CES_FAULTS_SOAK");
    if (v == nullptr)
      return 1;
    int n = std::atoi(v);
    return n >= 1 ? n : 1;
  }();
  return factor;
}

int partitions_for(long long events, int topics, int minimum) {
  // 3 MiB per partition leaves room under the ~5 MiB the mock broker keeps.
  const long long per_partition = 3LL * 1024 * 1024 / 650;
  auto needed = (events + per_partition * topics - 1) / (per_partition * topics);
  return std::max<int>(minimum, static_cast<int>(needed));
}

// -- The invariant ------------------------------------------------------------

namespace {

std::string show(const coords& c) {
  auto& [t, p, o] = c;
  return t + "/" + std::to_string(p) + "@" + std::to_string(o);
}

} // namespace

std::string tally::describe() const {
  std::ostringstream out;
  out << "produced=" << produced << " (poison " << produced_poison
      << ") journalled=" << journalled << " dead_lettered=" << dead_lettered
      << " duplicates=" << duplicates << " missing=" << missing
      << " unexpected=" << unexpected
      << " broker_duplicates=" << broker_duplicates
      << " misplaced=" << misplaced
      << " wrong_class=" << wrong_class;
  if (!examples.empty()) {
    out << " e.g.";
    for (auto& e : examples)
      out << ' ' << e;
  }
  return out.str();
}

tally check_invariant(const world& w, const std::vector<manifest_entry>& m) {
  tally t;
  std::map<coords, std::string> produced;
  for (auto& e : m) {
    if (!produced.emplace(e.at, e.kind).second) {
      ++t.unexpected; // the manifest itself repeats a coordinate
      t.examples.push_back("manifest-repeats:" + show(e.at));
    }
    if (e.kind != "ok")
      ++t.produced_poison;
  }
  t.produced = m.size();
  std::map<coords, int> journal;
  for (auto& r : w.rows("select topic, partition, \"offset\" from event_journal"))
    ++journal[coords{r[0], std::stoi(r[1]), std::stoll(r[2])}];
  std::map<coords, std::pair<int, std::string>> dlq;
  for (auto& r : w.rows("select topic, partition, \"offset\", error_class "
                        "from event_dlq")) {
    auto& d = dlq[coords{r[0], std::stoi(r[1]), std::stoll(r[2])}];
    ++d.first;
    d.second = r[3];
  }
  for (auto& [c, n] : journal)
    t.journalled += static_cast<size_t>(n);
  for (auto& [c, d] : dlq)
    t.dead_lettered += static_cast<size_t>(d.first);
  auto note = [&](const std::string& what, const coords& c) {
    if (t.examples.size() < 12)
      t.examples.push_back(what + ":" + show(c));
  };
  for (auto& [c, kind] : produced) {
    auto j = journal.find(c);
    auto d = dlq.find(c);
    int in_journal = j == journal.end() ? 0 : j->second;
    int in_dlq = d == dlq.end() ? 0 : d->second.first;
    if (in_journal + in_dlq == 0) {
      ++t.missing;
      note("missing", c);
      continue;
    }
    if (in_journal + in_dlq > 1) {
      ++t.duplicates;
      note("duplicate(j=" + std::to_string(in_journal)
             + ",dlq=" + std::to_string(in_dlq) + ")",
           c);
    }
    if (kind == "ok" ? in_dlq > 0 : in_journal > 0) {
      ++t.misplaced;
      note(kind == "ok" ? "ok-in-dlq" : kind + "-in-journal", c);
    }
    if (kind != "ok" && in_dlq > 0 && d->second.second != kind) {
      ++t.wrong_class;
      note("class " + d->second.second + "!=" + kind, c);
    }
  }
  for (auto& [c, n] : journal)
    if (produced.count(c) == 0) {
      // A record the producer never acknowledged at this coordinate: the
      // same produce stored twice by the broker (its retry across an outage
      // landed at a second offset) carries the event_id of another
      // journalled record. Anything else was never produced.
      auto& [topic, part, off] = c;
      auto twin = w.count(
        "select count(*) from event_journal u join event_journal o"
        " on o.topic = u.topic and o.payload->>'event_id'"
        " = u.payload->>'event_id' and (o.partition, o.\"offset\")"
        " <> (u.partition, u.\"offset\") where u.topic = '" + topic
        + "' and u.partition = " + std::to_string(part)
        + " and u.\"offset\" = " + std::to_string(off));
      if (twin > 0) {
        ++t.broker_duplicates;
        note("broker-duplicate", c);
        continue;
      }
      ++t.unexpected;
      note("unexpected-journal", c);
    }
  for (auto& [c, d] : dlq)
    if (produced.count(c) == 0) {
      ++t.unexpected;
      note("unexpected-dlq", c);
    }
  return t;
}

long long stored_rows(const world& w) {
  try {
    return w.count("select (select count(*) from event_journal) + (select "
                   "count(*) from event_dlq)");
  } catch (const std::exception&) {
    return -1;
  }
}

bool wait_stored(const world& w, long long n,
                 std::chrono::milliseconds timeout) {
  return eventually([&] { return stored_rows(w) >= n; }, timeout);
}

double time_to_store(const world& w, long long target,
                     clock_type::time_point since,
                     std::chrono::milliseconds timeout) {
  auto deadline = clock_type::now() + timeout;
  for (;;) {
    if (stored_rows(w) >= target)
      return seconds(since, clock_type::now());
    if (clock_type::now() >= deadline)
      return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds{20});
  }
}

// -- The broker ---------------------------------------------------------------

std::map<partition_key, int64_t> broker_highs(world& w) {
  // The mock's control channel when the world has one, else ListOffsets.
  return w.high_watermarks();
}

std::map<partition_key, int32_t> partition_leaders(const world& w) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", w.bootstrap().c_str(), err,
                        sizeof err)
        != RD_KAFKA_CONF_OK
      || rd_kafka_conf_set(conf, "log_level", "3", err, sizeof err)
           != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"partition_leaders: "} + err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"partition_leaders: "} + err);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> guard{rk,
                                                           rd_kafka_destroy};
  std::map<partition_key, int32_t> result;
  for (auto& t : w.topics) {
    rd_kafka_topic_t* topic = rd_kafka_topic_new(rk, t.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    auto rc = rd_kafka_metadata(rk, 0, topic, &md, 10000);
    rd_kafka_topic_destroy(topic);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
      throw std::runtime_error("partition_leaders: "
                               + std::string{rd_kafka_err2str(rc)});
    for (int i = 0; i < md->topic_cnt; ++i)
      for (int j = 0; j < md->topics[i].partition_cnt; ++j) {
        auto& p = md->topics[i].partitions[j];
        result[{md->topics[i].topic, p.id}]
          = p.err == RD_KAFKA_RESP_ERR_NO_ERROR ? p.leader : -1;
      }
    rd_kafka_metadata_destroy(md);
  }
  return result;
}

tally check_against_broker(world& w) {
  tally t;
  auto highs = broker_highs(w);
  std::map<coords, int> stored = w.journal_coords();
  for (auto& [c, n] : w.dlq_coords())
    stored[c] += n;
  for (auto& [k, high] : highs)
    for (int64_t o = 0; o < high; ++o) {
      ++t.produced;
      auto i = stored.find(coords{k.first, k.second, o});
      if (i == stored.end()) {
        ++t.missing;
        continue;
      }
      if (i->second > 1)
        ++t.duplicates;
      stored.erase(i);
    }
  t.unexpected = stored.size();
  t.journalled
    = static_cast<size_t>(w.count("select count(*) from event_journal"));
  t.dead_lettered
    = static_cast<size_t>(w.count("select count(*) from event_dlq"));
  return t;
}

std::map<partition_key, int64_t>
kafka_committed(const world& w, const std::string& group, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  auto set = [&](const char* k, const std::string& v) {
    if (rd_kafka_conf_set(conf, k, v.c_str(), err, sizeof(err))
        != RD_KAFKA_CONF_OK)
      throw std::runtime_error(std::string("kafka_committed: ") + k + ": "
                               + err);
  };
  set("bootstrap.servers", w.bootstrap());
  set("group.id", group);
  set("enable.auto.commit", "false");
  set("log_level", "3");
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string("kafka_committed: ") + err);
  }
  auto list = rd_kafka_topic_partition_list_new(
    static_cast<int>(w.topics.size()) * partitions);
  for (auto& t : w.topics)
    for (int p = 0; p < partitions; ++p)
      rd_kafka_topic_partition_list_add(list, t.c_str(), p);
  auto rc = rd_kafka_committed(rk, list, 15000);
  std::map<partition_key, int64_t> result;
  std::string failure;
  if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
    failure = rd_kafka_err2str(rc);
  else
    for (int i = 0; i < list->cnt; ++i) {
      auto& e = list->elems[i];
      if (e.err != RD_KAFKA_RESP_ERR_NO_ERROR && failure.empty())
        failure = rd_kafka_err2str(e.err);
      if (e.offset >= 0)
        result[{e.topic, e.partition}] = e.offset;
    }
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (!failure.empty())
    throw std::runtime_error("kafka_committed: " + failure);
  return result;
}

// -- Metrics and memory ---------------------------------------------------------

double metric_sum(const std::string& exposition, const std::string& name) {
  std::istringstream in{exposition};
  double sum = 0;
  bool found = false;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#'
        || line.compare(0, name.size(), name) != 0
        || line.size() <= name.size()
        || (line[name.size()] != '{' && line[name.size()] != ' '))
      continue;
    auto sp = line.rfind(' ');
    if (sp == std::string::npos)
      continue;
    try {
      sum += std::stod(line.substr(sp + 1));
      found = true;
    } catch (const std::exception&) {
      // not a number: ignore
    }
  }
  return found ? sum : -1;
}

long rss_kib(pid_t pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/status"};
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0)
      return std::strtol(line.c_str() + 6, nullptr, 10);
  return -1;
}

sample scrape(uint16_t metrics_port) {
  sample s;
  auto r = ces::test::http_get("127.0.0.1", metrics_port, "/metrics",
                               std::chrono::milliseconds{1000});
  if (r.status != 200)
    return s;
  s.scraped = true;
  s.in_flight = metric_sum(r.body, "crm_batches_in_flight");
  s.db_up = metric_sum(r.body, "crm_db_up");
  s.ingested = metric_sum(r.body, "crm_events_ingested_total");
  s.persisted = metric_sum(r.body, "crm_events_persisted_total");
  s.dead_lettered = metric_sum(r.body, "crm_events_dlq_total");
  s.skipped = metric_sum(r.body, "crm_events_skipped_total");
  s.restarts = metric_sum(r.body, "crm_actor_restarts_total");
  return s;
}

sampler::sampler(std::chrono::milliseconds period)
  : period_(period), start_(clock_type::now()) {
  thread_ = std::thread{[this] { run(); }};
}

sampler::~sampler() {
  stop();
}

void sampler::stop() {
  stop_ = true;
  if (thread_.joinable())
    thread_.join();
}

void sampler::watch(pid_t pid, uint16_t metrics_port, uint16_t http_port) {
  std::lock_guard<std::mutex> guard{mtx_};
  pid_ = pid;
  port_ = metrics_port;
  http_port_ = http_port;
}

double sampler::now() const {
  return seconds(start_, clock_type::now());
}

void sampler::run() {
  while (!stop_) {
    auto next = clock_type::now() + period_;
    pid_t pid;
    uint16_t port;
    uint16_t http;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      pid = pid_;
      port = port_;
      http = http_port_;
    }
    if (port != 0) {
      auto t = now();
      auto s = scrape(port);
      s.t = t;
      if (pid > 0)
        s.rss_kib = rss_kib(pid);
      if (http != 0)
        s.ready = ces::test::http_get("127.0.0.1", http, "/ready",
                                      std::chrono::milliseconds{1000})
                    .status;
      std::lock_guard<std::mutex> guard{mtx_};
      samples_.push_back(s);
    }
    std::this_thread::sleep_until(next);
  }
}

std::vector<sample> sampler::samples() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return samples_;
}

std::vector<sample> sampler::between(double from, double to) const {
  std::vector<sample> result;
  for (auto& s : samples())
    if (s.t >= from && s.t < to)
      result.push_back(s);
  return result;
}

sample sampler::last() const {
  std::lock_guard<std::mutex> guard{mtx_};
  for (auto it = samples_.rbegin(); it != samples_.rend(); ++it)
    if (it->scraped)
      return *it;
  return {};
}

// -- The log --------------------------------------------------------------------

size_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<size_t>(n);
}

std::vector<nlohmann::json> log_events(const std::string& path,
                                       const std::string& event, size_t from) {
  std::ifstream in{path};
  if (from > 0)
    in.seekg(static_cast<std::streamoff>(from));
  std::vector<nlohmann::json> result;
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] != '{')
      continue;
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      continue;
    if (event.empty() || (j.contains("event") && j["event"] == event))
      result.push_back(std::move(j));
  }
  return result;
}

namespace {

/// "topic/partition[@offset],..." or "none".
std::map<partition_key, int64_t> parse_partitions(const std::string& text) {
  std::map<partition_key, int64_t> result;
  std::istringstream in{text};
  for (std::string item; std::getline(in, item, ',');) {
    auto slash = item.rfind('/');
    if (slash == std::string::npos)
      continue;
    auto at = item.find('@', slash);
    auto partition = std::stoi(item.substr(slash + 1, at - slash - 1));
    int64_t offset = at == std::string::npos ? -1 : std::stoll(item.substr(at + 1));
    result[{item.substr(0, slash), partition}] = offset;
  }
  return result;
}

} // namespace

std::vector<std::map<partition_key, int64_t>>
assignments(const std::string& log_path, size_t from) {
  std::vector<std::map<partition_key, int64_t>> result;
  for (auto& j : log_events(log_path, "partitions_assigned", from))
    result.push_back(parse_partitions(j.value("partitions", "")));
  return result;
}

std::vector<partition_key> owned_partitions(const std::string& log_path,
                                            size_t from) {
  // Eager protocol: a revocation lists every owned partition and precedes
  // the next assignment; cooperative: both are increments. Removing what is
  // revoked and adding what is assigned follows both.
  std::set<partition_key> owned;
  for (auto& j : log_events(log_path, "", from)) {
    auto ev = j.value("event", "");
    if (ev != "partitions_revoked" && ev != "partitions_assigned")
      continue;
    for (auto& [k, offset] : parse_partitions(j.value("partitions", ""))) {
      if (ev == "partitions_revoked")
        owned.erase(k);
      else
        owned.insert(k);
    }
  }
  return {owned.begin(), owned.end()};
}

// -- Figures --------------------------------------------------------------------

namespace {

std::string fmt(double v) {
  if (v < 0)
    return "n/a";
  std::ostringstream out;
  if (std::fabs(v - std::round(v)) < 1e-9 && std::fabs(v) < 1e15)
    out << static_cast<long long>(std::llround(v));
  else
    out << std::fixed << std::setprecision(2) << v;
  return out.str();
}

} // namespace

void figures::add(const std::string& key, double value) {
  extra.emplace_back(key, fmt(value));
}

std::string figures::line() const {
  std::ostringstream out;
  out << "FAULT case=" << name << " produced=" << t.produced
      << " poison=" << t.produced_poison << " journalled=" << t.journalled
      << " dead_lettered=" << t.dead_lettered
      << " duplicates=" << t.duplicates << " missing=" << t.missing
      << " unexpected=" << t.unexpected
      << " broker_duplicates=" << t.broker_duplicates
      << " misplaced=" << t.misplaced << " recovery_s=" << fmt(recovery_s)
      << " first_commit_s=" << fmt(first_commit_s)
      << " peak_in_flight=" << fmt(peak_in_flight);
  for (auto& [k, v] : extra)
    out << ' ' << k << '=' << v;
  out << " elapsed_s=" << fmt(elapsed_s) << " notes=\"" << notes << '"';
  return out.str();
}

void figures::print() const {
  auto l = line();
  std::cout << l << std::endl;
  if (auto path = std::getenv("CES_FAULTS_FIGURES"); path != nullptr) {
    std::ofstream out{path, std::ios::app};
    out << l << '\n';
  }
}

} // namespace ces::faults
