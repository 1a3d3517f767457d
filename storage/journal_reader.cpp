#include "storage/journal_reader.hpp"

#include "storage/audit_write.hpp"
#include "storage/dlq_row.hpp"
#include "storage/event_query.hpp"
#include "storage/pg_util.hpp"

#include <climits>
#include <stdexcept>

namespace ces::storage {

namespace {

// RFC 3339 in UTC with microseconds, produced by the server.
#define CES_RFC3339(col)                                                       \
  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define CES_EPOCH_MS(col) "floor(extract(epoch FROM " col ") * 1000)::bigint"

const char* const event_columns =
  "id, tenant_id, topic, partition, \"offset\", key, headers::text,"
  " payload::text, " CES_EPOCH_MS("kafka_timestamp") ", "
  CES_RFC3339("received_at") ", replay_of, dlq_id";

#undef CES_RFC3339
#undef CES_EPOCH_MS

/// One event from `event_columns` (+ payload_raw when `with_raw`).
journal_event to_event(const pqxx::row& r, bool with_raw = false) {
  journal_event e;
  e.id = r[0].as<int64_t>();
  e.tenant_id = r[1].as<std::string>();
  e.topic = r[2].as<std::string>();
  e.partition = r[3].as<int32_t>();
  e.offset = r[4].as<int64_t>();
  e.has_key = !r[5].is_null();
  if (e.has_key)
    e.key = detail::bytes_of(r[5]);
  e.headers = detail::headers_of(r[6]);
  e.payload_json = r[7].as<std::string>();
  e.kafka_timestamp_ms = r[8].is_null() ? -1 : r[8].as<int64_t>();
  e.received_at = r[9].as<std::string>();
  e.replay_of = r[10].is_null() ? 0 : r[10].as<int64_t>();
  e.dlq_id = r[11].is_null() ? 0 : r[11].as<int64_t>();
  if (with_raw && !r[12].is_null()) {
    e.has_raw = true;
    e.payload_raw = r[12].as<std::string>();
  }
  return e;
}

/// A scope that sees no tenant's rows (nor rows without a tenant when
/// `with_unknown`): nothing to ask PostgreSQL.
bool sees_nothing(const tenant_scope& scope, bool with_unknown) {
  return !scope.all && scope.tenants.empty()
         && !(with_unknown && scope.unknown_tenant);
}

/// `tx.quote` as the sql_quote of storage/event_query.hpp.
sql_quote quoter(pqxx::transaction_base& tx) {
  return [&tx](const std::string& v) { return tx.quote(v); };
}

/// `where` (a condition from event_where/dlq_where) with the keyset cursor:
/// id < before_id when before_id > 0.
std::string before(std::string where, int64_t before_id) {
  if (before_id > 0)
    where = "(" + where + ") AND id < " + std::to_string(before_id);
  return where;
}

/// The tenants of `scope` as one text[] parameter (empty when all).
std::string tenants_param(const tenant_scope& scope) {
  return scope.all ? std::string{"{}"} : detail::text_array(scope.tenants);
}

} // namespace

struct journal_reader::impl {
  std::string url;
  journal_reader_options opts;
  std::unique_ptr<detail::pg_session> db;

  void ensure_connected() {
    if (db != nullptr && db->conn->is_open())
      return;
    db.reset();
    std::vector<std::string> setup{
      "SET application_name = 'crm-events-sink reader'",
      "SET default_transaction_read_only = on"};
    if (opts.statement_timeout_ms > 0)
      setup.push_back("SET statement_timeout = "
                      + std::to_string(opts.statement_timeout_ms));
    db = detail::connect_session(url, setup, "journal_reader");
  }

  /// Runs `f(transaction)` in a read-only transaction on a live connection;
  /// any libpqxx failure drops the connection and becomes an infra_error.
  template <class F>
  auto run(const char* what, F f) {
    ensure_connected();
    try {
      pqxx::read_transaction tx{*db->conn, "journal_reader"};
      return f(tx);
    } catch (const pqxx::failure& e) {
      db.reset();
      throw detail::to_infra_error(e, what);
    }
  }

  /// Runs `f(transaction)` in a read-write transaction (the session's
  /// default is read-only) and commits; failures as run().
  template <class F>
  void run_write(const char* what, F f) {
    ensure_connected();
    try {
      pqxx::work tx{*db->conn, "journal_reader_write"};
      tx.exec("SET TRANSACTION READ WRITE");
      f(tx);
      tx.commit();
    } catch (const pqxx::failure& e) {
      db.reset();
      throw detail::to_infra_error(e, what);
    }
  }

  int dlq_payload_limit() const {
    auto n = opts.max_dlq_payload_bytes;
    return n == 0 || n > static_cast<size_t>(INT_MAX) ? INT_MAX
                                                       : static_cast<int>(n);
  }
};

journal_reader::journal_reader(std::string database_url,
                               journal_reader_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->url = std::move(database_url);
  impl_->opts = opts;
}

journal_reader::~journal_reader() = default;

std::vector<journal_event>
journal_reader::latest_events(int limit, const tenant_scope& scope) {
  if (limit <= 0 || sees_nothing(scope, false))
    return {};
  return impl_->run("journal latest_events", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(std::string("SELECT ") + event_columns
                                + " FROM event_journal"
                                  " WHERE ($2 OR tenant_id = ANY($3::text[]))"
                                  " ORDER BY id DESC LIMIT $1",
                              limit, scope.all, tenants_param(scope));
    std::vector<journal_event> out;
    out.reserve(res.size());
    for (const auto& row : res)
      out.push_back(to_event(row));
    return out;
  });
}

event_page journal_reader::latest_page(int limit, const tenant_scope& scope) {
  return find_page(event_filter{}, scope, limit, 0);
}

namespace {

/// Newest-first windows find_page tries before the whole journal when the
/// filter has no lower time bound (seconds back from the database's now()):
/// a page inside a window is planned over that window's partitions only,
/// not every partition of the journal (planning a page over 90 daily
/// partitions cost more than running it: bench/README.md "The journal at
/// scale").
constexpr int64_t page_windows_s[] = {86400, 7 * 86400};

/// How much longer than a window a windowed read looks back. A journal row's
/// received_at is its transaction's start (now()), its id is taken at its
/// insert, so a row with a larger id than another can have an earlier
/// received_at only by as long as its transaction lasted; a window's page
/// is used only when its oldest row is inside the window, so a row left out
/// by the look-back would belong to a transaction longer than this (journal
/// writes are one batch: seconds).
constexpr int64_t page_window_margin_s = 3600;

} // namespace

event_page journal_reader::find_page(const event_filter& f,
                                     const tenant_scope& scope, int limit,
                                     int64_t before_id) {
  event_page page;
  if (limit <= 0 || sees_nothing(scope, false))
    return page;
  auto max_bytes = impl_->opts.max_page_bytes;
  if (max_bytes == 0 || max_bytes > static_cast<size_t>(INT64_MAX))
    max_bytes = static_cast<size_t>(INT64_MAX);
  return impl_->run("journal find_page", [&](pqxx::transaction_base& tx) {
    // `sized`: the newest `limit` matching rows with their sizes; `running`
    // numbers them and adds the sizes up; the page is the prefix whose
    // running size fits, at least one row. sized_count is how many rows
    // `sized` had: more than returned means cut. One pass over the rows
    // found by the index scan: no second lookup by id (which would probe
    // every partition of the journal for each id). Keyset: the cursor is an
    // id bound, so every page is an index scan from that id down.
    auto where = before(event_where(f, scope, quoter(tx)), before_id);
    // `window_from` (epoch seconds, 0: none): only rows received since
    // then, plus the margin; in_window says whether `sized` was full and
    // its oldest row received since then (then the page is the page).
    auto query = [&](int64_t window_from) {
      std::string cond = where;
      std::string in_window = "true";
      if (window_from > 0) {
        auto from = std::to_string(window_from);
        cond = "(" + cond + ") AND received_at >= to_timestamp("
               + std::to_string(window_from - page_window_margin_s) + ")";
        in_window = "count(*) OVER () = $1"
                    " AND min(received_at) OVER () >= to_timestamp("
                    + from + ")";
      }
      return tx.exec_params(
        std::string{"SELECT * FROM (SELECT sized.*,"
                    " row_number() OVER w AS pos, sum(n) OVER w AS upto,"
                    " count(*) OVER () AS sized_count, "}
          + in_window + " AS in_window FROM (SELECT " + event_columns
          + ", received_at, octet_length(payload::text)"
            " + coalesce(octet_length(headers::text), 0)"
            " + 2 * coalesce(octet_length(key), 0) AS n"
            " FROM event_journal WHERE "
          + cond
          + " ORDER BY id DESC LIMIT $1) AS sized"
            " WINDOW w AS (ORDER BY id DESC ROWS UNBOUNDED PRECEDING))"
            " AS running WHERE pos = 1 OR upto <= $2 ORDER BY id DESC",
        limit, static_cast<int64_t>(max_bytes));
    };
    pqxx::result res;
    bool done = false;
    if (f.from.empty() && f.ids.empty()) {
      auto now = tx.exec1("SELECT floor(extract(epoch FROM now()))::bigint")[0]
                   .as<int64_t>();
      for (auto w : page_windows_s) {
        res = query(now - w);
        if (!res.empty() && res[0]["in_window"].as<bool>()) {
          done = true;
          break;
        }
      }
    }
    if (!done)
      res = query(0);
    page.events.reserve(res.size());
    int64_t measured = 0;
    for (const auto& row : res) {
      page.events.push_back(to_event(row));
      measured = row["sized_count"].as<int64_t>();
    }
    page.truncated = static_cast<int64_t>(page.events.size()) < measured;
    return page;
  });
}

std::optional<journal_event> journal_reader::event_by_id(int64_t id) {
  return impl_->run("journal event_by_id", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(std::string("SELECT ") + event_columns
                                + ", payload_raw FROM event_journal"
                                  " WHERE id = $1",
                              id);
    std::optional<journal_event> out;
    if (!res.empty())
      out = to_event(res[0], true);
    return out;
  });
}

bool journal_reader::event_dropped(int64_t id) {
  return impl_->run("journal event_dropped", [&](pqxx::transaction_base& tx) {
    return tx
      .exec_params1("SELECT EXISTS (SELECT 1 FROM journal_partitions"
                    " WHERE state IN ('detaching', 'dropped')"
                    " AND $1 BETWEEN min_id"
                    " AND max_id)",
                    id)[0]
      .as<bool>();
  });
}

std::vector<dlq_entry_row>
journal_reader::latest_dlq(int limit, const tenant_scope& scope) {
  return find_dlq(dlq_filter{}, scope, limit, 0);
}

std::vector<dlq_entry_row>
journal_reader::find_dlq(const dlq_filter& f, const tenant_scope& scope,
                         int limit, int64_t before_id) {
  if (limit <= 0 || sees_nothing(scope, true))
    return {};
  auto max_payload = impl_->dlq_payload_limit();
  return impl_->run("dlq find", [&](pqxx::transaction_base& tx) {
    auto where = before(dlq_where(f, scope, quoter(tx)), before_id);
    auto res = tx.exec_params("SELECT " + detail::dlq_row_columns("$2")
                                + " FROM event_dlq WHERE " + where
                                + " ORDER BY id DESC LIMIT $1",
                              limit, max_payload);
    std::vector<dlq_entry_row> out;
    out.reserve(res.size());
    for (const auto& row : res)
      out.push_back(detail::to_dlq_row(row));
    return out;
  });
}

std::optional<dlq_entry_row>
journal_reader::dlq_by_id(int64_t id, const tenant_scope& scope) {
  std::optional<dlq_entry_row> out;
  if (id <= 0 || sees_nothing(scope, true))
    return out;
  auto max_payload = impl_->dlq_payload_limit();
  return impl_->run("dlq by_id", [&](pqxx::transaction_base& tx) {
    auto where = dlq_where(dlq_filter{}, scope, quoter(tx));
    auto res = tx.exec_params("SELECT " + detail::dlq_row_columns("$2")
                                + " FROM event_dlq WHERE id = $1 AND ("
                                + where + ")",
                              id, max_payload);
    if (!res.empty())
      out = detail::to_dlq_row(res[0]);
    return out;
  });
}

void journal_reader::record_replay(const replay_record& r,
                                   const audit_entry& accepted) {
  impl_->run_write("record_replay", [&](pqxx::transaction_base& tx) {
    std::optional<int64_t> job;
    if (r.job_id != 0)
      job = r.job_id;
    std::optional<std::string> request;
    if (!r.request_id.empty())
      request = r.request_id;
    tx.exec_params("INSERT INTO replays (replay_id, event_id, tenant_id,"
                   " topic, principal, job_id, request_id)"
                   " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                   r.replay_id, r.event_id, r.tenant_id, r.topic, r.principal,
                   job, request);
    insert_audit(tx, accepted);
  });
}

void journal_reader::append_audit(const audit_entry& e) {
  impl_->run_write("append_audit",
                   [&](pqxx::transaction_base& tx) { insert_audit(tx, e); });
}

int64_t journal_reader::pending_dlq_count() {
  return impl_->run("dlq pending_count", [](pqxx::transaction_base& tx) {
    return tx.exec1("SELECT count(*) FROM event_dlq WHERE status = 'pending'")[0]
      .as<int64_t>();
  });
}

void journal_reader::ping() {
  impl_->run("ping", [](pqxx::transaction_base& tx) {
    tx.exec1("SELECT 1");
    return 0;
  });
}

bool journal_reader::connected() const {
  return impl_->db != nullptr && impl_->db->conn->is_open();
}

} // namespace ces::storage
