// dlq_store: the changes of event_dlq (sql/0006_dead_letters.sql), each with
// its audit_log row in the same transaction, over a store_session.
#include "storage/dlq_store.hpp"

#include "storage/audit_write.hpp"
#include "storage/backoff.hpp"
#include "storage/dlq_row.hpp"
#include "storage/event_query.hpp"
#include "storage/headers_json.hpp"
#include "storage/pg_util.hpp"

#include <algorithm>
#include <climits>
#include <random>
#include <stdexcept>

namespace ces::storage {

const char* to_string(dlq_outcome o) noexcept {
  switch (o) {
    case dlq_outcome::ok: return "ok";
    case dlq_outcome::not_found: return "not_found";
    case dlq_outcome::closed: return "closed";
    case dlq_outcome::still_invalid: return "still_invalid";
    case dlq_outcome::out_of_scope: return "out_of_scope";
  }
  return "not_found";
}

namespace {

/// At most this many ids in discard_many()'s audit row.
constexpr size_t max_audited_ids = 100;

/// A small JSON object writer for audit parameters and counts.
class json_object {
public:
  json_object& str(const char* k, const std::string& v) {
    key(k);
    append_json_string(out_, to_pg_text(v));
    return *this;
  }
  json_object& num(const char* k, int64_t v) {
    key(k);
    out_ += std::to_string(v);
    return *this;
  }
  json_object& boolean(const char* k, bool v) {
    key(k);
    out_ += v ? "true" : "false";
    return *this;
  }
  json_object& ids(const char* k, const std::vector<int64_t>& v) {
    key(k);
    out_ += '[';
    for (size_t i = 0; i < v.size(); ++i)
      out_ += (i > 0 ? "," : "") + std::to_string(v[i]);
    out_ += ']';
    return *this;
  }
  std::string done() const {
    return out_ + "}";
  }

private:
  void key(const char* k) {
    if (out_.size() > 1)
      out_ += ',';
    append_json_string(out_, k);
    out_ += ':';
  }
  std::string out_ = "{";
};

audit_entry audit_of(const requester& who, const char* action,
                     std::string target, std::string parameters,
                     const char* outcome, std::string counts) {
  audit_entry a;
  a.who = who;
  a.action = action;
  a.target = std::move(target);
  a.parameters = std::move(parameters);
  a.outcome = outcome;
  a.counts = std::move(counts);
  return a;
}

std::string target_of(int64_t id) {
  return "dlq/" + std::to_string(id);
}

/// `quote` of storage/event_query.hpp for `tx`.
sql_quote quoter(pqxx::transaction_base& tx) {
  return [&tx](const std::string& v) { return tx.quote(v); };
}

/// The condition of the rows `scope` sees.
std::string scope_where(pqxx::transaction_base& tx, const tenant_scope& scope) {
  return dlq_where(dlq_filter{}, scope, quoter(tx));
}

/// A row locked for a change, and whether it is open.
struct locked_row {
  dlq_entry_row row;
  bool open = false;
};

/// The principal written to resolved_by.
std::string by_of(const requester& who, bool automatic) {
  if (automatic && who.principal.empty())
    return "auto-retry";
  return who.principal;
}

kafka_record record_of(const dlq_entry_row& row,
                       const std::optional<std::string>& bytes) {
  kafka_record rec;
  rec.topic = row.topic;
  rec.partition = row.partition;
  rec.offset = row.offset;
  rec.has_key = row.has_key;
  rec.key = row.key;
  rec.headers = row.headers;
  rec.timestamp_ms = row.kafka_timestamp_ms;
  if (bytes) {
    rec.has_value = true;
    rec.value = *bytes;
  } else {
    rec.has_value = row.has_payload;
    rec.value = row.payload;
  }
  return rec;
}

} // namespace

struct dlq_store::impl {
  dlq_store_options opts;
  std::unique_ptr<detail::store_session> session;
  std::mt19937_64 rng{std::random_device{}()};

  template <class F>
  auto run(const char* what, F f) {
    return session->run(what, std::move(f));
  }

  /// Open rows: pending, failed, or retried for longer than republish_stale.
  std::string open_condition() const {
    return "(status IN ('pending', 'failed') OR (status = 'retried' AND"
           " updated_at < now() - interval '"
           + std::to_string(opts.republish_stale.count())
           + " milliseconds'))";
  }

  /// The whole row `id` (payload cut to `payload_limit`), locked FOR
  /// UPDATE, or nullopt.
  std::optional<locked_row> lock(pqxx::transaction_base& tx, int64_t id,
                                 const std::string& payload_limit
                                 = "2147483647") {
    auto res = tx.exec_params("SELECT " + detail::dlq_row_columns(payload_limit)
                                + ", " + open_condition()
                                + " FROM event_dlq WHERE id = $1 FOR UPDATE",
                              id);
    if (res.empty())
      return std::nullopt;
    locked_row out;
    out.row = detail::to_dlq_row(res[0]);
    out.open = res[0][22].as<bool>();
    return out;
  }

  /// The row `id` as it is now (payload cut to `payload_limit`).
  dlq_entry_row reload(pqxx::transaction_base& tx, int64_t id,
                       const std::string& payload_limit) {
    return detail::to_dlq_row(
      tx.exec_params1("SELECT " + detail::dlq_row_columns(payload_limit)
                        + " FROM event_dlq WHERE id = $1",
                      id));
  }

  /// The jitter factor of a backoff: uniform in [0.5, 1.0].
  double jitter() {
    return std::uniform_real_distribution<double>{0.5, 1.0}(rng);
  }

  /// payload_limit for rows returned to the API.
  std::string api_payload_limit() const {
    auto n = opts.max_dlq_payload_bytes;
    return std::to_string(n == 0 || n > static_cast<size_t>(INT_MAX)
                            ? INT_MAX
                            : static_cast<int>(n));
  }

  /// A failed retry of `row`: attempts + 1, the new error, the schedule;
  /// audited. Fills `out`.
  void record_failure(pqxx::transaction_base& tx, const dlq_entry_row& row,
                      bool bytes_given, const requester& who,
                      const dlq_retry_policy* policy, std::string error_class,
                      std::string error, dlq_retry_outcome& out);
};

void dlq_store::impl::record_failure(pqxx::transaction_base& tx,
                                     const dlq_entry_row& row,
                                     bool bytes_given, const requester& who,
                                     const dlq_retry_policy* policy,
                                     std::string error_class,
                                     std::string error,
                                     dlq_retry_outcome& out) {
  auto attempts = row.attempts + 1;
  // Status and schedule: a republish whose outcome was unknown is pending
  // again; automatic retry gives up at max_attempts or schedules the next.
  std::string status = row.status == "retried" ? "pending" : row.status;
  std::string next = "next_attempt_at";
  if (policy != nullptr) {
    if (attempts >= policy->max_attempts) {
      status = "failed";
      next = "NULL";
      out.gave_up = true;
    } else {
      auto delay = jittered_backoff(policy->initial, policy->max,
                                    static_cast<uint32_t>(attempts),
                                    jitter());
      status = "pending";
      next = "now() + interval '" + std::to_string(delay.count())
             + " milliseconds'";
    }
  }
  error = to_pg_text(error);
  tx.exec_params("UPDATE event_dlq SET attempts = $2, error_class = $3,"
                 " error = $4, status = $5, resolved_by = $6,"
                 " last_attempt_at = now(), updated_at = now(),"
                 " next_attempt_at = " + next + " WHERE id = $1",
                 row.id, attempts, error_class, error, status,
                 by_of(who, policy != nullptr));
  insert_audit(tx,
               audit_of(who, policy ? "dlq.auto_retry" : "dlq.retry",
                        target_of(row.id),
                        json_object{}
                          .str("mode", "journal")
                          .str("bytes", bytes_given ? "given" : "stored")
                          .str("error_class", error_class)
                          .str("error", error)
                          .str("status", status)
                          .done(),
                        "failed",
                        json_object{}.num("attempts", attempts).done()));
  out.outcome = dlq_outcome::still_invalid;
  out.attempts = attempts;
  out.error_class = std::move(error_class);
  out.error = std::move(error);
}

dlq_store::dlq_store(std::string database_url, dlq_store_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->opts = opts;
  impl_->session = std::make_unique<detail::store_session>(
    std::move(database_url), "dlq", std::vector<std::string>{},
    opts.statement_timeout_ms);
}

dlq_store::~dlq_store() = default;

bool dlq_store::connected() const {
  return impl_->session->connected();
}

std::optional<dlq_entry_row> dlq_store::load(int64_t id,
                                             const tenant_scope& scope) {
  return impl_->run("dlq load", [&](pqxx::transaction_base& tx) {
    std::optional<dlq_entry_row> out;
    auto res = tx.exec_params("SELECT " + detail::dlq_row_columns("2147483647")
                                + " FROM event_dlq WHERE id = $1 AND ("
                                + scope_where(tx, scope) + ")",
                              id);
    if (!res.empty())
      out = detail::to_dlq_row(res[0]);
    return out;
  });
}

dlq_retry_outcome
dlq_store::retry_journal(int64_t id, const std::optional<std::string>& bytes,
                         const requester& who,
                         const dlq_retry_policy* policy) {
  return impl_->run("dlq retry", [&](pqxx::dbtransaction& tx) {
    dlq_retry_outcome out;
    // Automatic retry is the service's: it sees every row.
    auto sees = [&](const std::string& tenant) {
      return policy != nullptr || who.scope.sees(tenant);
    };
    auto locked = impl_->lock(tx, id);
    if (!locked || !sees(locked->row.tenant_id))
      return out; // not_found
    auto& row = locked->row;
    out.topic = row.topic;
    out.tenant_id = row.tenant_id;
    out.attempts = row.attempts;
    // A row left 'retried' may be in Kafka already (its republish outcome
    // is unknown): ingestion journals that copy, so journalling it here too
    // could make it two journal rows. It can be republished again or
    // discarded, never journalled.
    if (!locked->open || row.status == "retried") {
      out.outcome = dlq_outcome::closed;
      out.error_class = row.status;
      return out;
    }
    auto checked = check_record(record_of(row, bytes), impl_->opts.limits);
    if (checked.reason != reject_reason::none) {
      impl_->record_failure(tx, row, bytes.has_value(), who, policy,
                            to_string(checked.reason), checked.error, out);
      return out;
    }
    if (!sees(checked.tenant_id)) {
      out.outcome = dlq_outcome::out_of_scope;
      out.tenant_id = checked.tenant_id;
      return out; // nothing changed
    }
    // The journal row, as journal_writer writes it (storage/copy_text.hpp):
    // coordinates, key, headers and timestamp copied from the DLQ row.
    // Coordinates a DLQ row never had are -1 (the journal's are NOT NULL).
    // A row PostgreSQL refuses (trigger, constraint) rolls back to the
    // savepoint and counts as a failed attempt (db_rejected), as ingestion
    // isolates it; other errors (connection) end the transaction.
    std::optional<std::string> raw;
    if (impl_->opts.keep_raw)
      raw = checked.rec.value;
    int64_t event_id = 0;
    std::string db_error;
    // Never an insert into a missing partition (as journal_writer): a
    // lookup when the partition of now() exists.
    tx.exec("SELECT ces_journal_ensure_partitions(now(), now(), "
            + tx.quote(impl_->opts.partition_interval) + ")");
    {
      // exec(), not exec_params(): libpqxx 6.4 sets the savepoint (and rolls
      // back to it on an error) only for statements run through exec().
      pqxx::subtransaction sp{tx, "dlq_retry_journal"};
      try {
        event_id =
          sp.exec1("INSERT INTO event_journal (tenant_id, topic, partition,"
                   " \"offset\", key, headers, payload, kafka_timestamp,"
                   " dlq_id, payload_raw) SELECT "
                   + sp.quote(checked.tenant_id)
                   + ", topic, coalesce(partition, -1),"
                     " coalesce(\"offset\", -1), key, headers, "
                   + sp.quote(checked.rec.value)
                   + "::jsonb, kafka_timestamp, id, "
                   + (raw ? sp.quote(*raw) : std::string{"NULL"})
                   + " FROM event_dlq WHERE id = " + std::to_string(id)
                   + " RETURNING id")[0]
            .as<int64_t>();
      } catch (const pqxx::sql_error& e) {
        // Whatever is not the infrastructure's fault blames the row (a
        // trigger's own error class too, e.g. 42xxx): it counts as a failed
        // attempt with backoff instead of stopping every later retry.
        auto& st = e.sqlstate();
        if (!detail::is_data_error(e)
            && (st.size() != 5 || detail::is_infra_sqlstate(st)))
          throw;
        db_error = detail::describe(e);
      }
      if (db_error.empty())
        sp.commit(); // RELEASE SAVEPOINT
      else
        sp.abort(); // ROLLBACK TO SAVEPOINT
    }
    if (!db_error.empty()) {
      impl_->record_failure(tx, row, bytes.has_value(), who, policy,
                            to_string(reject_reason::db_rejected), db_error,
                            out);
      return out;
    }
    auto resolution = policy ? "auto" : "journal";
    out.attempts =
      tx.exec_params1("UPDATE event_dlq SET status = 'resolved',"
                      " resolution = $2, resolved_event_id = $3,"
                      " resolved_by = $4, attempts = attempts + 1,"
                      " last_attempt_at = now(), next_attempt_at = NULL,"
                      " updated_at = now() WHERE id = $1 RETURNING attempts",
                      id, resolution, event_id, by_of(who, policy != nullptr))
        [0].as<int32_t>();
    insert_audit(tx, audit_of(who, policy ? "dlq.auto_retry" : "dlq.retry",
                              target_of(id),
                              json_object{}
                                .str("mode", "journal")
                                .str("bytes", bytes ? "given" : "stored")
                                .num("event_id", event_id)
                                .str("tenant_id", checked.tenant_id)
                                .done(),
                              "ok",
                              json_object{}
                                .num("events", 1)
                                .num("attempts", out.attempts)
                                .done()));
    out.outcome = dlq_outcome::ok;
    out.event_id = event_id;
    out.tenant_id = checked.tenant_id;
    return out;
  });
}

std::optional<dlq_entry_row>
dlq_store::begin_republish(int64_t id, const requester& who,
                           dlq_outcome& outcome) {
  return impl_->run("dlq begin_republish", [&](pqxx::transaction_base& tx) {
    std::optional<dlq_entry_row> out;
    outcome = dlq_outcome::not_found;
    auto locked = impl_->lock(tx, id);
    if (!locked || !who.scope.sees(locked->row.tenant_id))
      return out;
    if (!locked->open) {
      outcome = dlq_outcome::closed;
      return out;
    }
    // next_attempt_at stays: a failed republish leaves the schedule as it
    // was.
    tx.exec_params("UPDATE event_dlq SET status = 'retried',"
                   " attempts = attempts + 1, last_attempt_at = now(),"
                   " updated_at = now(), resolved_by = $2 WHERE id = $1",
                   id, by_of(who, false));
    out = impl_->reload(tx, id, "2147483647");
    insert_audit(tx, audit_of(who, "dlq.republish", target_of(id),
                              json_object{}
                                .str("mode", "republish")
                                .str("step", "begin")
                                .str("topic", out->topic)
                                .done(),
                              "ok",
                              json_object{}
                                .num("attempts", out->attempts)
                                .done()));
    outcome = dlq_outcome::ok;
    return out;
  });
}

void dlq_store::finish_republish(int64_t id, bool delivered,
                                 const std::string& error,
                                 const requester& who) {
  impl_->run("dlq finish_republish", [&](pqxx::transaction_base& tx) {
    // Only a row still waiting for this outcome changes (one an operator
    // took over after republish_stale keeps what they did).
    auto res =
      delivered
        ? tx.exec_params("UPDATE event_dlq SET status = 'resolved',"
                         " resolution = 'republish', next_attempt_at = NULL,"
                         " resolved_by = $2, updated_at = now()"
                         " WHERE id = $1 AND status = 'retried'",
                         id, by_of(who, false))
        : tx.exec_params("UPDATE event_dlq SET status = 'pending',"
                         " error = $3, resolved_by = $2, updated_at = now()"
                         " WHERE id = $1 AND status = 'retried'",
                         id, by_of(who, false), to_pg_text(error));
    json_object params;
    params.str("mode", "republish").str("step", "finish");
    if (!delivered)
      params.str("error", error);
    insert_audit(tx, audit_of(who, "dlq.republish", target_of(id),
                              params.done(), delivered ? "ok" : "failed",
                              json_object{}
                                .num("updated", res.affected_rows())
                                .done()));
    return 0;
  });
}

std::optional<dlq_entry_row> dlq_store::discard(int64_t id,
                                                const std::string& reason,
                                                const requester& who,
                                                dlq_outcome& outcome) {
  return impl_->run("dlq discard", [&](pqxx::transaction_base& tx) {
    std::optional<dlq_entry_row> out;
    outcome = dlq_outcome::not_found;
    auto locked = impl_->lock(tx, id, "0");
    if (!locked || !who.scope.sees(locked->row.tenant_id))
      return out;
    if (!locked->open) {
      outcome = dlq_outcome::closed;
      return out;
    }
    tx.exec_params("UPDATE event_dlq SET status = 'discarded',"
                   " discard_reason = $2, resolution = 'discard',"
                   " resolved_by = $3, next_attempt_at = NULL,"
                   " updated_at = now() WHERE id = $1",
                   id, to_pg_text(reason), by_of(who, false));
    insert_audit(tx, audit_of(who, "dlq.discard", target_of(id),
                              json_object{}.str("reason", reason).done(),
                              "ok",
                              json_object{}.num("discarded", 1).done()));
    out = impl_->reload(tx, id, impl_->api_payload_limit());
    outcome = dlq_outcome::ok;
    return out;
  });
}

int64_t dlq_store::discard_many(const std::vector<int64_t>& ids,
                                const std::string& reason,
                                const requester& who) {
  if (ids.empty())
    return 0;
  std::string list = "{";
  for (size_t i = 0; i < ids.size(); ++i)
    list += (i > 0 ? "," : "") + std::to_string(ids[i]);
  list += '}';
  return impl_->run("dlq discard_many", [&](pqxx::transaction_base& tx) {
    // Locked in id order first: two bulk discards never deadlock.
    auto res = tx.exec_params(
      "WITH locked AS (SELECT id FROM event_dlq WHERE id = ANY($1::bigint[])"
      " AND " + impl_->open_condition() + " AND (" + scope_where(tx, who.scope)
        + ") ORDER BY id FOR UPDATE)"
          " UPDATE event_dlq SET status = 'discarded', discard_reason = $2,"
          " resolution = 'discard', resolved_by = $3,"
          " next_attempt_at = NULL, updated_at = now()"
          " WHERE id IN (SELECT id FROM locked) RETURNING id",
      list, to_pg_text(reason), by_of(who, false));
    std::vector<int64_t> done;
    for (const auto& r : res)
      done.push_back(r[0].as<int64_t>());
    std::sort(done.begin(), done.end());
    auto n = static_cast<int64_t>(done.size());
    auto truncated = done.size() > max_audited_ids;
    if (truncated)
      done.resize(max_audited_ids);
    insert_audit(tx, audit_of(who, "dlq.discard", "dlq",
                              json_object{}
                                .str("reason", reason)
                                .ids("ids", done)
                                .boolean("ids_truncated", truncated)
                                .done(),
                              "ok",
                              json_object{}
                                .num("discarded", n)
                                .num("requested",
                                     static_cast<int64_t>(ids.size()))
                                .done()));
    return n;
  });
}

int64_t dlq_store::purge(const std::string& status, const std::string& before,
                         const requester& who, int batch) {
  if (status != "resolved" && status != "discarded")
    throw std::invalid_argument("status must be resolved or discarded");
  if (batch <= 0)
    throw std::invalid_argument("purge batch must be positive");
  impl_->run("dlq purge", [&](pqxx::transaction_base& tx) {
    try {
      tx.exec_params("SELECT $1::timestamptz", before);
    } catch (const pqxx::sql_error& e) {
      if (!detail::is_data_sqlstate(e.sqlstate()))
        throw;
      throw std::invalid_argument("invalid before: not a timestamp (RFC 3339,"
                                  " e.g. 2024-05-01T12:00:00Z)");
    }
    return 0;
  });
  int64_t total = 0;
  auto audit = [&](pqxx::transaction_base& tx, int64_t deleted) {
    insert_audit(tx, audit_of(who, "dlq.purge", "dlq",
                              json_object{}
                                .str("status", status)
                                .str("before", before)
                                .done(),
                              "ok",
                              json_object{}.num("deleted", deleted).done()));
  };
  // Each batch commits with its own audit row: what was deleted is audited
  // even when a later batch fails.
  for (;;) {
    // The outer conditions are checked again on rows changed meanwhile.
    auto n = impl_->run("dlq purge", [&](pqxx::transaction_base& tx) {
      auto cond = "status = $1 AND updated_at < $2::timestamptz AND ("
                  + scope_where(tx, who.scope) + ")";
      auto deleted = static_cast<int64_t>(
        tx.exec_params("DELETE FROM event_dlq WHERE id IN (SELECT id FROM"
                       " event_dlq WHERE " + cond + " LIMIT $3) AND " + cond,
                       status, before, batch)
          .affected_rows());
      if (deleted > 0 || total == 0)
        audit(tx, deleted);
      return deleted;
    });
    total += n;
    if (n < batch)
      break;
  }
  return total;
}

std::vector<int64_t> dlq_store::due_for_retry(const dlq_retry_policy& policy,
                                              int limit) {
  if (limit <= 0 || policy.classes.empty() || policy.max_attempts <= 0)
    return {};
  return impl_->run("dlq due_for_retry", [&](pqxx::transaction_base& tx) {
    // Pending rows of the classes that reached the limit another way (manual
    // retries, a lowered limit) are given up now rather than left pending
    // for ever.
    auto gave_up = tx.exec_params(
      "UPDATE event_dlq SET status = 'failed', next_attempt_at = NULL,"
      " resolved_by = 'auto-retry', updated_at = now()"
      " WHERE status = 'pending' AND error_class = ANY($1::text[])"
      " AND attempts >= $2 RETURNING id",
      detail::text_array(policy.classes), policy.max_attempts);
    if (!gave_up.empty()) {
      requester service;
      service.principal = "auto-retry";
      insert_audit(tx, audit_of(service, "dlq.auto_retry", "dlq",
                                json_object{}
                                  .num("max_attempts", policy.max_attempts)
                                  .done(),
                                "failed",
                                json_object{}
                                  .num("gave_up", static_cast<int64_t>(
                                                    gave_up.size()))
                                  .done()));
    }
    // status = 'pending' implies the predicate of event_dlq_open_idx.
    auto res = tx.exec_params(
      "SELECT id FROM event_dlq WHERE status = 'pending'"
      " AND error_class = ANY($1::text[]) AND attempts < $2"
      " AND coalesce(next_attempt_at, received_at + $3 * interval '1 ms')"
      " <= now() ORDER BY id LIMIT $4",
      detail::text_array(policy.classes), policy.max_attempts,
      static_cast<int64_t>(policy.initial.count()), limit);
    std::vector<int64_t> out;
    out.reserve(res.size());
    for (const auto& r : res)
      out.push_back(r[0].as<int64_t>());
    return out;
  });
}

} // namespace ces::storage
