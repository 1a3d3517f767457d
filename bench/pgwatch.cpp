// bench-pgwatch: watches the journal over ONE libpq connection, so that the
// benchmark's own polling costs PostgreSQL one cheap query per interval
// instead of a connection (a fork) per look. Used by bench/run.sh.
//
//   bench-pgwatch wait-offsets --url U [--group G] --target N
//                 [--interval-ms 50] [--timeout-s 900]
//       waits until sum(next_offset) in journal_offsets reaches N (keyed by
//       the Kafka cluster, not the group: --group is accepted and ignored)
//       (with low watermarks 0 that is "N records journalled or dead-lettered";
//       the table has one row per partition, so the query is a few µs)
//   bench-pgwatch wait-rows --url U --min N [--interval-ms 5] [--timeout-s 60]
//       waits until event_journal holds at least N rows
//   bench-pgwatch latency --url U --expect N [--interval-ms 2]
//                 [--timeout-s 120] [--out FILE]
//       produce -> visible latency: remembers max(id), then polls
//       `id > last_seen` every interval; a row's latency is the wall-clock
//       END of the first query that returned it minus its kafka_timestamp
//       (the producer's CreateTime, ms). Stops after N rows.
//
// Prints one line of key=value pairs on stdout. Exit 0 when done, 1 on
// timeout (the line then says complete=0), 2 on usage or connection errors.
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>
#include <optional>
#include <set>

namespace {

using sys_clock = std::chrono::system_clock;
using steady = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench-pgwatch: %s\n", msg.c_str());
  std::exit(2);
}

double now_epoch_s() {
  return std::chrono::duration<double>(sys_clock::now().time_since_epoch())
    .count();
}

int64_t now_epoch_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
           sys_clock::now().time_since_epoch())
    .count();
}

struct conn {
  PGconn* c = nullptr;
  explicit conn(const std::string& url) {
    c = PQconnectdb(url.c_str());
    if (PQstatus(c) != CONNECTION_OK)
      die(std::string("connect: ") + PQerrorMessage(c));
  }
  ~conn() {
    PQfinish(c);
  }
  /// Runs `sql` with text parameters; dies on error, except that with
  /// `missing_ok` a table that does not exist yet (the sink has not applied
  /// its migrations) gives nullptr.
  PGresult* exec(const char* sql, const std::vector<std::string>& params = {},
                 bool missing_ok = false) {
    std::vector<const char*> p;
    for (auto& s : params)
      p.push_back(s.c_str());
    PGresult* r = PQexecParams(c, sql, static_cast<int>(p.size()), nullptr,
                               p.empty() ? nullptr : p.data(), nullptr,
                               nullptr, 0);
    auto st = PQresultStatus(r);
    if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      if (missing_ok && state != nullptr
          && std::strcmp(state, "42P01") == 0) { // undefined_table
        PQclear(r);
        return nullptr;
      }
      std::string msg = PQresultErrorMessage(r);
      PQclear(r);
      die("query failed: " + msg);
    }
    return r;
  }
  int64_t scalar(const char* sql, const std::vector<std::string>& params = {},
                 bool missing_ok = false) {
    PGresult* r = exec(sql, params, missing_ok);
    if (r == nullptr)
      return 0;
    int64_t v = PQntuples(r) > 0 && !PQgetisnull(r, 0, 0)
                  ? std::strtoll(PQgetvalue(r, 0, 0), nullptr, 10)
                  : 0;
    PQclear(r);
    return v;
  }
};

struct args {
  std::string mode;
  std::map<std::string, std::string> kv;
  std::string get(const std::string& k, const char* def = nullptr) const {
    auto it = kv.find(k);
    if (it != kv.end())
      return it->second;
    if (def == nullptr)
      die("--" + k + " is required");
    return def;
  }
  long long num(const std::string& k, const char* def = nullptr) const {
    auto v = get(k, def);
    char* end = nullptr;
    long long n = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || n < 0)
      die("--" + k + " needs a non-negative integer, got '" + v + "'");
    return n;
  }
};

args parse(int argc, char** argv) {
  if (argc < 2)
    die("usage: bench-pgwatch wait-offsets|wait-rows|latency --url U ... "
        "(see the comment at the top of bench/pgwatch.cpp)");
  args a;
  a.mode = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string k = argv[i];
    if (k.rfind("--", 0) != 0 || i + 1 >= argc)
      die("bad argument '" + k + "'");
    a.kv[k.substr(2)] = argv[++i];
  }
  return a;
}

/// Polls `sql` (one bigint) until it reaches `target`.
int wait_for(conn& db, const char* sql, const std::vector<std::string>& params,
             int64_t target, long long interval_ms, long long timeout_s) {
  auto deadline = steady::now() + std::chrono::seconds(timeout_s);
  int64_t v = 0;
  long polls = 0;
  for (;;) {
    v = db.scalar(sql, params, true);
    ++polls;
    if (v >= target) {
      std::printf("complete=1 value=%lld at=%.6f polls=%ld\n",
                  static_cast<long long>(v), now_epoch_s(), polls);
      return 0;
    }
    if (steady::now() >= deadline) {
      std::printf("complete=0 value=%lld at=%.6f polls=%ld\n",
                  static_cast<long long>(v), now_epoch_s(), polls);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(interval_ms));
  }
}

double pct(const std::vector<double>& sorted, double p) {
  if (sorted.empty())
    return NAN;
  // Nearest rank.
  auto rank = static_cast<size_t>(std::ceil(p / 100.0 * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

int latency(conn& db, const args& a) {
  const int64_t expect = a.num("expect");
  const long long interval_ms = a.num("interval-ms", "2");
  const long long timeout_s = a.num("timeout-s", "120");
  const std::string out_path = a.get("out", "");
  // Only index scans: a generic or misestimated plan must never turn one
  // poll into a scan of the whole journal.
  PQclear(db.exec("SET enable_seqscan = off"));
  // Rows may commit out of id order (several persisters, each with its own
  // transaction): poll above `floor` (every id up to it seen) and remember
  // the ids seen above it, so that a row committed late is still caught. A
  // gap that stays open for 2 s (an id consumed by a rolled back
  // transaction) is skipped.
  int64_t floor = db.scalar("SELECT coalesce(max(id), 0) FROM event_journal");
  const int64_t baseline = floor;
  std::set<int64_t> above;
  std::optional<steady::time_point> gap_since;

  struct row {
    int64_t id, ts_us, seen_us;
  };
  std::vector<row> rows;
  rows.reserve(static_cast<size_t>(expect));
  long polls = 0;
  double query_us_total = 0;
  double query_us_max = 0;
  const auto started = steady::now();
  const auto deadline = started + std::chrono::seconds(timeout_s);
  auto next_poll = steady::now();
  while (static_cast<int64_t>(rows.size()) < expect
         && steady::now() < deadline) {
    std::this_thread::sleep_until(next_poll);
    next_poll = steady::now() + std::chrono::milliseconds(interval_ms);
    const auto q0 = steady::now();
    PGresult* r = db.exec(
      "SELECT id, (extract(epoch FROM kafka_timestamp) * 1000000)::bigint"
      " FROM event_journal WHERE id > $1 ORDER BY id",
      {std::to_string(floor)});
    // The row was visible by the time the query's snapshot was taken, so
    // the end of the query is an upper bound of its visibility time (and the
    // start of the previous query a lower one): latencies are never
    // understated, even if the server runs the query late.
    const int64_t seen = now_epoch_us();
    const double q_us =
      std::chrono::duration<double, std::micro>(steady::now() - q0).count();
    query_us_total += q_us;
    query_us_max = std::max(query_us_max, q_us);
    ++polls;
    const int n = PQntuples(r);
    for (int i = 0; i < n; ++i) {
      row x;
      x.id = std::strtoll(PQgetvalue(r, i, 0), nullptr, 10);
      if (!above.insert(x.id).second)
        continue; // seen in an earlier poll
      x.ts_us = PQgetisnull(r, i, 1)
                  ? -1
                  : std::strtoll(PQgetvalue(r, i, 1), nullptr, 10);
      x.seen_us = seen;
      rows.push_back(x);
    }
    PQclear(r);
    while (!above.empty() && *above.begin() == floor + 1) {
      above.erase(above.begin());
      ++floor;
    }
    if (above.empty()) {
      gap_since.reset();
    } else if (!gap_since) {
      gap_since = steady::now();
    } else if (steady::now() - *gap_since > std::chrono::seconds(2)) {
      floor = *above.begin() - 1; // give up on the gap
      gap_since.reset();
    }
  }
  const double elapsed =
    std::chrono::duration<double>(steady::now() - started).count();
  // Rows committed out of id order would be missed by `id > last_seen`:
  // count what the table holds above the baseline to detect that.
  const int64_t in_table = db.scalar(
    "SELECT count(*) FROM event_journal WHERE id > $1",
    {std::to_string(baseline)});

  std::vector<double> lat;
  lat.reserve(rows.size());
  size_t no_ts = 0;
  for (auto& x : rows) {
    if (x.ts_us < 0) {
      ++no_ts;
      continue;
    }
    lat.push_back((x.seen_us - x.ts_us) / 1000.0);
  }
  if (!out_path.empty()) {
    if (FILE* f = std::fopen(out_path.c_str(), "w")) {
      std::fprintf(f, "id\tkafka_ts_us\tseen_us\tlatency_ms\n");
      for (auto& x : rows)
        std::fprintf(f, "%lld\t%lld\t%lld\t%.3f\n",
                     static_cast<long long>(x.id),
                     static_cast<long long>(x.ts_us),
                     static_cast<long long>(x.seen_us),
                     x.ts_us < 0 ? -1.0 : (x.seen_us - x.ts_us) / 1000.0);
      std::fclose(f);
    }
  }
  double mean = 0;
  for (double v : lat)
    mean += v;
  mean = lat.empty() ? NAN : mean / lat.size();
  std::sort(lat.begin(), lat.end());
  const bool complete = static_cast<int64_t>(rows.size()) >= expect;
  std::printf("complete=%d rows=%zu in_table=%lld missed=%lld no_ts=%zu "
              "p50_ms=%.1f p90_ms=%.1f p99_ms=%.1f p999_ms=%.1f max_ms=%.1f "
              "min_ms=%.1f mean_ms=%.1f polls=%ld mean_poll_period_ms=%.2f "
              "mean_query_ms=%.2f max_query_ms=%.2f\n",
              complete ? 1 : 0, rows.size(), static_cast<long long>(in_table),
              static_cast<long long>(in_table)
                - static_cast<long long>(rows.size()),
              no_ts, pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 99.9),
              lat.empty() ? NAN : lat.back(),
              lat.empty() ? NAN : lat.front(), mean, polls,
              polls > 0 ? elapsed * 1000.0 / polls : NAN,
              polls > 0 ? query_us_total / polls / 1000.0 : NAN,
              query_us_max / 1000.0);
  return complete ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  args a = parse(argc, argv);
  conn db{a.get("url")};
  if (a.mode == "wait-offsets") {
    return wait_for(db,
                    "SELECT coalesce(sum(next_offset), 0)::bigint"
                    " FROM journal_offsets",
                    {}, a.num("target"),
                    a.num("interval-ms", "50"), a.num("timeout-s", "900"));
  }
  if (a.mode == "wait-rows") {
    // count(*) over a LIMITed subquery: cheap however large the table is.
    const std::string min = std::to_string(a.num("min"));
    return wait_for(db,
                    "SELECT count(*) FROM (SELECT 1 FROM event_journal"
                    " LIMIT $1::bigint) s",
                    {min}, a.num("min"), a.num("interval-ms", "5"),
                    a.num("timeout-s", "60"));
  }
  if (a.mode == "latency")
    return latency(db, a);
  die("unknown mode '" + a.mode + "'");
}
