#include "api/metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/exposer.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <dirent.h>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace ces {

namespace {

using prometheus::BuildCounter;
using prometheus::BuildGauge;
using prometheus::BuildHistogram;

const prometheus::Histogram::BucketBoundaries& persist_buckets() {
  static const prometheus::Histogram::BucketBoundaries xs = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25,  0.5,    1.0,   2.5,  5.0,   10.0};
  return xs;
}

const prometheus::Histogram::BucketBoundaries& record_buckets() {
  static const prometheus::Histogram::BucketBoundaries xs = {
    1, 10, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000};
  return xs;
}

const prometheus::Histogram::BucketBoundaries& http_buckets() {
  static const prometheus::Histogram::BucketBoundaries xs = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5,   1.0,    2.5,   5.0,  10.0,  30.0};
  return xs;
}

const prometheus::Histogram::BucketBoundaries& event_lag_buckets() {
  static const prometheus::Histogram::BucketBoundaries xs = {
    0.01, 0.025, 0.05, 0.1,  0.25, 0.5,  1.0,    2.5,    5.0,
    10.0, 30.0,  60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0};
  return xs;
}

const char* const job_kinds[] = {"replay", "dlq_retry", "dlq_discard"};
const char* const job_statuses[] = {"succeeded", "failed", "cancelled"};

prometheus::MetricFamily process_family(const char* name, const char* help,
                                        prometheus::MetricType type,
                                        double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter)
    m.counter.value = value;
  else
    m.gauge.value = value;
  f.metric.push_back(std::move(m));
  return f;
}

/// The process_* metrics every Prometheus client exports, read from
/// /proc/self at each scrape. A family whose source cannot be read is left
/// out of that scrape.
class process_collector : public prometheus::Collectable {
public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    try {
      collect(out);
    } catch (const std::exception&) {
      // nop: a malformed /proc line; the families read so far are served
    }
    return out;
  }

private:
  static void collect(std::vector<prometheus::MetricFamily>& out) {
    using prometheus::MetricType;
    auto ticks = static_cast<double>(::sysconf(_SC_CLK_TCK));
    auto page = static_cast<double>(::sysconf(_SC_PAGESIZE));
    std::string stat;
    {
      std::ifstream stat_file{"/proc/self/stat"}; // closed before open_fds()
      std::getline(stat_file, stat);
    }
    // Fields after the command, which is in parentheses and may contain
    // spaces: the first one here is field 3 (state).
    auto close = stat.rfind(')');
    std::vector<std::string> fields;
    if (close != std::string::npos) {
      std::istringstream in{stat.substr(close + 1)};
      for (std::string f; in >> f;)
        fields.push_back(f);
    }
    auto field = [&](size_t n) { // 1-based, as in proc(5)
      return std::stod(fields.at(n - 3));
    };
    if (fields.size() >= 22 && ticks > 0) {
      out.push_back(process_family(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds",
        MetricType::Counter, (field(14) + field(15)) / ticks));
      out.push_back(process_family("process_virtual_memory_bytes",
                                   "Virtual memory size in bytes",
                                   MetricType::Gauge, field(23)));
      out.push_back(process_family("process_resident_memory_bytes",
                                   "Resident memory size in bytes",
                                   MetricType::Gauge, field(24) * page));
      if (auto boot = boot_time(); boot > 0)
        out.push_back(process_family(
          "process_start_time_seconds",
          "Start time of the process since unix epoch in seconds",
          MetricType::Gauge, boot + field(22) / ticks));
    }
    if (auto fds = open_fds(); fds >= 0)
      out.push_back(process_family("process_open_fds",
                                   "Number of open file descriptors",
                                   MetricType::Gauge, fds));
    rlimit lim{};
    if (::getrlimit(RLIMIT_NOFILE, &lim) == 0)
      out.push_back(process_family(
        "process_max_fds", "Maximum number of open file descriptors",
        MetricType::Gauge,
        lim.rlim_cur == RLIM_INFINITY ? -1.0
                                      : static_cast<double>(lim.rlim_cur)));
  }

  /// btime of /proc/stat: boot time, seconds since the epoch (0: unknown).
  static double boot_time() {
    std::ifstream in{"/proc/stat"};
    for (std::string l; std::getline(in, l);)
      if (l.rfind("btime ", 0) == 0)
        return std::stod(l.substr(6));
    return 0;
  }

  /// Entries of /proc/self/fd, without the one opendir() itself holds
  /// (-1: unreadable).
  static double open_fds() {
    DIR* d = ::opendir("/proc/self/fd");
    if (d == nullptr)
      return -1;
    double n = 0;
    while (auto e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++n;
    ::closedir(d);
    return n - 1;
  }
};

} // namespace

struct metrics::impl {
  std::shared_ptr<prometheus::Registry> registry
    = std::make_shared<prometheus::Registry>();

  prometheus::Family<prometheus::Counter>& ingested
    = BuildCounter()
        .Name("crm_events_ingested_total")
        .Help("CRM events read from Kafka, by topic")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& persisted
    = BuildCounter()
        .Name("crm_events_persisted_total")
        .Help("CRM events written to the event_journal table, by topic")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& dlq
    = BuildCounter()
        .Name("crm_events_dlq_total")
        .Help("CRM events written to the dead-letter queue, by topic and "
              "reason")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& skipped
    = BuildCounter()
        .Name("crm_events_skipped_total")
        .Help("CRM events skipped because another consumer group member had "
              "already journalled them, by topic")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& replay_duplicates
    = BuildCounter()
        .Name("crm_replay_duplicates_total")
        .Help("Resent records of a bulk replay job whose (job, event) the "
              "journal already held, not journalled again, by topic")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& restarts
    = BuildCounter()
        .Name("crm_actor_restarts_total")
        .Help("Restarts of supervised actors after a crash, by actor")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& crashes
    = BuildCounter()
        .Name("crm_actor_crashes_total")
        .Help("Supervised actors that ended unasked (restarted or not: during "
              "a shutdown or after the restart budget), by actor")
        .Register(*registry);
  prometheus::Histogram& persist_seconds
    = BuildHistogram()
        .Name("crm_batch_persist_seconds")
        .Help("Time to persist one batch in PostgreSQL (one transaction)")
        .Register(*registry)
        .Add({}, persist_buckets());
  prometheus::Histogram& batch_records
    = BuildHistogram()
        .Name("crm_batch_records")
        .Help("Records per persisted batch")
        .Register(*registry)
        .Add({}, record_buckets());
  prometheus::Gauge& in_flight
    = BuildGauge()
        .Name("crm_batches_in_flight")
        .Help("Batches sent to the persister and not yet acknowledged")
        .Register(*registry)
        .Add({});
  prometheus::Gauge& dlq_pending
    = BuildGauge()
        .Name("crm_dlq_pending")
        .Help("Dead-letter queue entries not yet replayed or resolved")
        .Register(*registry)
        .Add({});
  prometheus::Gauge& db_up
    = BuildGauge()
        .Name("crm_db_up")
        .Help("1 when the persister's last PostgreSQL transaction succeeded, "
              "0 while it retries after an infrastructure error")
        .Register(*registry)
        .Add({});

  prometheus::Family<prometheus::Gauge>& build_info
    = BuildGauge()
        .Name("crm_build_info")
        .Help("1, labelled with the running build's version and git revision")
        .Register(*registry);

  prometheus::Family<prometheus::Counter>& http_requests
    = BuildCounter()
        .Name("crm_http_requests_total")
        .Help("Operator API requests answered, by route and status code")
        .Register(*registry);
  prometheus::Family<prometheus::Histogram>& http_seconds
    = BuildHistogram()
        .Name("crm_http_request_seconds")
        .Help("Operator API request latency from arrival to answer, by route")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& replays
    = BuildCounter()
        .Name("crm_replays_total")
        .Help("Replay requests of journalled events, by topic and outcome")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& auth
    = BuildCounter()
        .Name("crm_auth_total")
        .Help("Authentications of operator API requests, by outcome (ok, "
              "unauthenticated, rate_limited, forbidden, db_unavailable)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& audit
    = BuildCounter()
        .Name("crm_audit_rows_total")
        .Help("Audit rows of refused requests and batched actions, by "
              "outcome (written; overflow: counted in a summary row; retry: "
              "a failed write kept for the next one)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& replays_throttled
    = BuildCounter()
        .Name("crm_replays_throttled_total")
        .Help("Replays refused or delayed by the per-tenant replay budget, "
              "by tenant")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& job_events
    = BuildCounter()
        .Name("crm_job_events_total")
        .Help("Events handled by bulk jobs, by job kind and outcome "
              "(published, failed)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& dlq_retries
    = BuildCounter()
        .Name("crm_dlq_retries_total")
        .Help("Automatic DLQ retries, by outcome (resolved, still_failing, "
              "gave_up, error)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& dlq_actions
    = BuildCounter()
        .Name("crm_dlq_actions_total")
        .Help("Operator actions on DLQ rows, by action (retry, republish, "
              "discard, purge) and outcome (ok, refused, failed)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& webhook_deliveries
    = BuildCounter()
        .Name("crm_webhook_deliveries_total")
        .Help("DLQ alert webhook calls, by outcome (delivered, retry, "
              "failed, rejected, dropped)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& dlq_alerts
    = BuildCounter()
        .Name("crm_dlq_alerts_total")
        .Help("DLQ alerts raised, by type (dlq.threshold, dlq.growth, "
              "dlq.recovered)")
        .Register(*registry);

  prometheus::Family<prometheus::Counter>& offsets_lost
    = BuildCounter()
        .Name("crm_kafka_offsets_lost_total")
        .Help("Offsets the broker deleted (retention) before the consumer "
              "read them, by topic and partition")
        .Register(*registry);
  prometheus::Family<prometheus::Gauge>& consumer_lag
    = BuildGauge()
        .Name("crm_consumer_lag_records")
        .Help("Records the broker holds past the journal's position, by "
              "assigned topic and partition (high watermark minus the next "
              "offset the journal will hold)")
        .Register(*registry);
  prometheus::Histogram& event_lag
    = BuildHistogram()
        .Name("crm_event_lag_seconds")
        .Help("Age of journalled events at commit: received_at minus the "
              "Kafka timestamp (replays and records without one excluded)")
        .Register(*registry)
        .Add({}, event_lag_buckets());
  prometheus::Family<prometheus::Counter>& jobs_finished
    = BuildCounter()
        .Name("crm_jobs_finished_total")
        .Help("Bulk jobs this instance ran to their end, by kind (replay, "
              "dlq_retry, dlq_discard) and status (succeeded, failed, "
              "cancelled)")
        .Register(*registry);
  prometheus::Gauge& jobs_running
    = BuildGauge()
        .Name("crm_jobs_running")
        .Help("Bulk jobs this instance is running now")
        .Register(*registry)
        .Add({});

  prometheus::Gauge& journal_partitions
    = BuildGauge()
        .Name("crm_journal_partitions")
        .Help("event_journal's attached partitions after the last "
              "maintenance round")
        .Register(*registry)
        .Add({});
  prometheus::Family<prometheus::Counter>& maintenance_runs
    = BuildCounter()
        .Name("crm_maintenance_runs_total")
        .Help("Maintenance rounds (partitions ahead, retention), by outcome "
              "(ok, failed)")
        .Register(*registry);
  prometheus::Family<prometheus::Counter>& retention_deleted
    = BuildCounter()
        .Name("crm_retention_deleted_total")
        .Help("Rows deleted by retention, by table (event_journal: rows of "
              "dropped partitions; event_dlq; audit_log)")
        .Register(*registry);

  std::shared_ptr<process_collector> process
    = std::make_shared<process_collector>();

  /// The series of crm_consumer_lag_records now shown.
  std::mutex lag_mtx;
  std::map<std::pair<std::string, int32_t>, prometheus::Gauge*> lag_series;

  // Only for declare_*: the data path never takes this lock.
  std::mutex declared_mtx;
  std::set<std::string> declared_topics;
  std::set<std::string> declared_reasons;

  // Last: stops serving before the registry goes away.
  std::unique_ptr<prometheus::Exposer> exposer;
  std::mutex exposer_mtx;
};

metrics::metrics() : impl_(std::make_unique<impl>()) {
  for (auto kind : job_kinds)
    for (auto status : job_statuses)
      impl_->jobs_finished.Add({{"kind", kind}, {"status", status}});
  for (auto outcome : {"ok", "failed"})
    impl_->maintenance_runs.Add({{"outcome", outcome}});
  for (auto table : {"event_journal", "event_dlq", "audit_log"})
    impl_->retention_deleted.Add({{"table", table}});
}

metrics::~metrics() {
  // Stop the HTTP threads before the families they read are destroyed.
  std::lock_guard<std::mutex> guard{impl_->exposer_mtx};
  impl_->exposer.reset();
}

void metrics::expose(const std::string& address, uint16_t port) {
  std::lock_guard<std::mutex> guard{impl_->exposer_mtx};
  if (impl_->exposer)
    throw std::logic_error("metrics are already exposed");
  auto host = address.find(':') != std::string::npos
                  && address.front() != '['
                ? "[" + address + "]"
                : address;
  auto endpoint = host + ":" + std::to_string(port);
  try {
    auto exposer = std::make_unique<prometheus::Exposer>(endpoint, 2);
    exposer->RegisterCollectable(impl_->registry);
    exposer->RegisterCollectable(impl_->process);
    impl_->exposer = std::move(exposer);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot serve metrics on " + endpoint
                             + ": port in use or address not available ("
                             + e.what() + ")");
  }
}

uint16_t metrics::exposed_port() const {
  std::lock_guard<std::mutex> guard{impl_->exposer_mtx};
  if (!impl_->exposer)
    return 0;
  auto ports = impl_->exposer->GetListeningPorts();
  return ports.empty() ? 0 : static_cast<uint16_t>(ports.front());
}

void metrics::add_ingested(const std::string& topic, uint64_t n) {
  impl_->ingested.Add({{"topic", topic}}).Increment(static_cast<double>(n));
}

void metrics::add_persisted(const std::string& topic, uint64_t n) {
  impl_->persisted.Add({{"topic", topic}}).Increment(static_cast<double>(n));
}

void metrics::add_dlq(const std::string& topic, const std::string& reason,
                      uint64_t n) {
  impl_->dlq.Add({{"topic", topic}, {"reason", reason}})
    .Increment(static_cast<double>(n));
}

void metrics::add_skipped(const std::string& topic, uint64_t n) {
  impl_->skipped.Add({{"topic", topic}}).Increment(static_cast<double>(n));
}

void metrics::add_replay_duplicates(const std::string& topic, uint64_t n) {
  impl_->replay_duplicates.Add({{"topic", topic}})
    .Increment(static_cast<double>(n));
}

void metrics::observe_batch_persist(double seconds, uint64_t records) {
  impl_->persist_seconds.Observe(seconds);
  impl_->batch_records.Observe(static_cast<double>(records));
}

void metrics::add_actor_restart(const std::string& actor) {
  impl_->restarts.Add({{"actor", actor}}).Increment();
}

void metrics::add_actor_crash(const std::string& actor) {
  impl_->crashes.Add({{"actor", actor}}).Increment();
}

void metrics::set_in_flight_batches(int64_t n) {
  impl_->in_flight.Set(static_cast<double>(n));
}

void metrics::set_dlq_pending(int64_t n) {
  impl_->dlq_pending.Set(static_cast<double>(n));
}

void metrics::set_db_up(bool up) {
  impl_->db_up.Set(up ? 1.0 : 0.0);
}

void metrics::set_build_info(const std::string& version,
                             const std::string& revision) {
  impl_->build_info.Add({{"version", version}, {"revision", revision}}).Set(1);
}

void metrics::declare_topics(const std::vector<std::string>& topics) {
  std::lock_guard<std::mutex> guard{impl_->declared_mtx};
  for (auto& t : topics) {
    if (!t.empty() && t[0] == '^')
      continue; // a pattern: its topics get series with their first event
    impl_->ingested.Add({{"topic", t}});
    impl_->persisted.Add({{"topic", t}});
    impl_->skipped.Add({{"topic", t}});
    impl_->replay_duplicates.Add({{"topic", t}});
    for (auto& r : impl_->declared_reasons)
      impl_->dlq.Add({{"topic", t}, {"reason", r}});
    impl_->declared_topics.insert(t);
  }
}

void metrics::declare_dlq_reasons(const std::vector<std::string>& reasons) {
  std::lock_guard<std::mutex> guard{impl_->declared_mtx};
  for (auto& r : reasons) {
    for (auto& t : impl_->declared_topics)
      impl_->dlq.Add({{"topic", t}, {"reason", r}});
    impl_->declared_reasons.insert(r);
  }
}

void metrics::declare_actors(const std::vector<std::string>& actors) {
  for (auto& a : actors) {
    impl_->restarts.Add({{"actor", a}});
    impl_->crashes.Add({{"actor", a}});
  }
}

void metrics::observe_http_request(const std::string& route, int code,
                                   double seconds) {
  impl_->http_requests.Add({{"route", route}, {"code", std::to_string(code)}})
    .Increment();
  impl_->http_seconds.Add({{"route", route}}, http_buckets()).Observe(seconds);
}

void metrics::add_replay(const std::string& topic,
                         const std::string& outcome) {
  impl_->replays.Add({{"topic", topic}, {"outcome", outcome}}).Increment();
}

void metrics::add_auth(const std::string& outcome) {
  impl_->auth.Add({{"outcome", outcome}}).Increment();
}

void metrics::add_audit(const std::string& outcome, uint64_t n) {
  impl_->audit.Add({{"outcome", outcome}}).Increment(static_cast<double>(n));
}

void metrics::add_replay_throttled(const std::string& tenant) {
  impl_->replays_throttled.Add({{"tenant", tenant}}).Increment();
}

void metrics::add_job_events(const std::string& kind,
                             const std::string& outcome, uint64_t n) {
  impl_->job_events.Add({{"kind", kind}, {"outcome", outcome}})
    .Increment(static_cast<double>(n));
}

void metrics::add_dlq_retries(const std::string& outcome, uint64_t n) {
  impl_->dlq_retries.Add({{"outcome", outcome}})
    .Increment(static_cast<double>(n));
}

void metrics::add_dlq_actions(const std::string& action,
                              const std::string& outcome, uint64_t n) {
  impl_->dlq_actions.Add({{"action", action}, {"outcome", outcome}})
    .Increment(static_cast<double>(n));
}

void metrics::add_webhook_delivery(const std::string& outcome) {
  impl_->webhook_deliveries.Add({{"outcome", outcome}}).Increment();
}

void metrics::add_dlq_alert(const std::string& type) {
  impl_->dlq_alerts.Add({{"type", type}}).Increment();
}

void metrics::declare_http_routes(const std::vector<std::string>& routes) {
  for (auto& r : routes)
    impl_->http_seconds.Add({{"route", r}}, http_buckets());
}

void metrics::add_offsets_lost(const std::string& topic, int32_t partition,
                               uint64_t n) {
  impl_->offsets_lost
    .Add({{"topic", topic}, {"partition", std::to_string(partition)}})
    .Increment(static_cast<double>(n));
}

void metrics::set_consumer_lag(const std::vector<partition_lag>& lags) {
  std::lock_guard<std::mutex> guard{impl_->lag_mtx};
  auto& shown = impl_->lag_series;
  std::set<std::pair<std::string, int32_t>> now;
  for (auto& l : lags) {
    auto key = std::make_pair(l.topic, l.partition);
    auto i = shown.find(key);
    if (i == shown.end())
      i = shown
            .emplace(key, &impl_->consumer_lag.Add(
                            {{"topic", l.topic},
                             {"partition", std::to_string(l.partition)}}))
            .first;
    i->second->Set(static_cast<double>(std::max<int64_t>(0, l.records)));
    now.insert(std::move(key));
  }
  for (auto i = shown.begin(); i != shown.end();) {
    if (now.count(i->first) == 0) {
      impl_->consumer_lag.Remove(i->second);
      i = shown.erase(i);
    } else {
      ++i;
    }
  }
}

void metrics::observe_event_lag(const std::vector<double>& seconds) {
  if (seconds.empty())
    return;
  auto& bounds = event_lag_buckets();
  std::vector<double> counts(bounds.size() + 1, 0.0);
  double sum = 0;
  for (auto s : seconds) {
    s = std::max(0.0, s);
    sum += s;
    // Prometheus buckets are `le`: the first bound >= s.
    auto i = std::lower_bound(bounds.begin(), bounds.end(), s)
             - bounds.begin();
    counts[static_cast<size_t>(i)] += 1;
  }
  impl_->event_lag.ObserveMultiple(counts, sum);
}

void metrics::add_job_finished(const std::string& kind,
                               const std::string& status) {
  impl_->jobs_finished.Add({{"kind", kind}, {"status", status}}).Increment();
}

void metrics::set_jobs_running(int64_t n) {
  impl_->jobs_running.Set(static_cast<double>(n));
}

void metrics::set_journal_partitions(int64_t n) {
  impl_->journal_partitions.Set(static_cast<double>(n));
}

void metrics::add_maintenance_run(const std::string& outcome) {
  impl_->maintenance_runs.Add({{"outcome", outcome}}).Increment();
}

void metrics::add_retention_deleted(const std::string& table, uint64_t n) {
  impl_->retention_deleted.Add({{"table", table}})
    .Increment(static_cast<double>(n));
}

std::string metrics::text() const {
  auto families = impl_->registry->Collect();
  for (auto& f : impl_->process->Collect())
    families.push_back(std::move(f));
  return prometheus::TextSerializer{}.Serialize(families);
}

} // namespace ces
