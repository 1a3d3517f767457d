#include "storage/jobs.hpp"

#include "storage/audit_write.hpp"
#include "storage/event_query.hpp"
#include "storage/headers_json.hpp"
#include "storage/pg_util.hpp"

#include <algorithm>
#include <map>

namespace ces::storage {

namespace {

// RFC 3339 in UTC with microseconds, produced by the server (as in
// journal_reader.cpp).
#define CES_RFC3339(col)                                                       \
  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

const char* const job_columns =
  "id, kind, status, request::text, matched, done, failed, requested_by,"
  " request_id, last_error, " CES_RFC3339("created_at") ", "
  CES_RFC3339("started_at") ", " CES_RFC3339("finished_at")
  ", cancel_requested, scope_all, scope_tenants, upto_id, cursor_id,"
  " scope_unknown_tenant, requested_role";

const char* const event_columns =
  "id, tenant_id, topic, partition, key, headers::text,"
  " coalesce(payload_raw, payload::text),"
  " floor(extract(epoch FROM kafka_timestamp) * 1000)::bigint";

// Jobs whose scope the requester's ($1 all, $2 tenants) covers.
const char* const visible =
  "($1 OR (NOT scope_all AND scope_tenants <@ $2::text[]))";

job_row to_job(const pqxx::row& r) {
  job_row j;
  j.id = r[0].as<int64_t>();
  j.kind = r[1].as<std::string>();
  j.status = r[2].as<std::string>();
  j.request = r[3].as<std::string>();
  j.matched = r[4].as<int64_t>();
  j.done = r[5].as<int64_t>();
  j.failed = r[6].as<int64_t>();
  j.requested_by = r[7].as<std::string>();
  j.request_id = detail::opt_text(r[8]);
  j.last_error = detail::opt_text(r[9]);
  j.created_at = detail::opt_text(r[10]);
  j.started_at = detail::opt_text(r[11]);
  j.finished_at = detail::opt_text(r[12]);
  j.cancel_requested = r[13].as<bool>();
  return j;
}

claimed_job to_claimed(const pqxx::row& r) {
  claimed_job c;
  c.row = to_job(r);
  c.scope.all = r[14].as<bool>();
  c.scope.tenants = detail::text_array_elements(r[15]);
  c.upto_id = r[16].as<int64_t>();
  c.cursor_id = r[17].as<int64_t>();
  c.scope.unknown_tenant = r[18].as<bool>();
  c.role = detail::opt_text(r[19]);
  return c;
}

job_event to_event(const pqxx::row& r) {
  job_event e;
  e.id = r[0].as<int64_t>();
  e.tenant_id = r[1].as<std::string>();
  e.topic = r[2].as<std::string>();
  e.partition = r[3].as<int32_t>();
  e.has_key = !r[4].is_null();
  if (e.has_key)
    e.key = pqxx::binarystring{r[4]}.str();
  if (!r[5].is_null()) {
    try {
      e.headers = headers_from_json(r[5].c_str());
    } catch (const std::invalid_argument&) {
      // Edited by hand: publish without its headers rather than fail.
    }
  }
  e.payload = r[6].as<std::string>();
  e.kafka_timestamp_ms = r[7].is_null() ? -1 : r[7].as<int64_t>();
  return e;
}

std::string tenants_param(const tenant_scope& scope) {
  return scope.all ? std::string{"{}"} : detail::text_array(scope.tenants);
}

std::string bigint_array(const std::vector<int64_t>& xs) {
  std::string out = "{";
  for (size_t i = 0; i < xs.size(); ++i) {
    if (i > 0)
      out += ',';
    out += std::to_string(xs[i]);
  }
  return out + "}";
}

std::string where_of(pqxx::transaction_base& tx, const event_filter& f,
                     const tenant_scope& scope) {
  return event_where(f, scope,
                     [&tx](const std::string& v) { return tx.quote(v); });
}

/// The open DLQ entries a bulk DLQ request covers within `scope`.
std::string dlq_where_of(pqxx::transaction_base& tx,
                         const dlq_bulk_request& req,
                         const tenant_scope& scope) {
  return dlq_where(req.filter, scope,
                   [&tx](const std::string& v) { return tx.quote(v); },
                   req.ids)
         + " AND status IN ('pending', 'failed')";
}

std::optional<std::string> opt_string(const std::string& s) {
  std::optional<std::string> out;
  if (!s.empty())
    out = s;
  return out;
}

} // namespace

too_many_events::too_many_events(int64_t n, int64_t max)
  : std::runtime_error(std::to_string(n) + " events match, more than "
                       "max_events (" + std::to_string(max) + ")"),
    matched(n) {
}

struct job_store::impl {
  std::string owner;
  job_store_options opts;
  std::unique_ptr<detail::store_session> session;

  /// Runs `f(transaction)` and commits; any libpqxx failure drops the
  /// connection and becomes an infra_error (too_many_events passes).
  template <class F>
  auto run(const char* what, F f) {
    return session->run(what, std::move(f));
  }
};

job_store::job_store(std::string database_url, std::string owner,
                     job_store_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->owner = std::move(owner);
  impl_->opts = opts;
  impl_->session = std::make_unique<detail::store_session>(
    std::move(database_url), "jobs", std::vector<std::string>{},
    opts.statement_timeout_ms);
}

job_store::~job_store() = default;

const std::string& job_store::owner() const {
  return impl_->owner;
}

replay_plan job_store::plan(const event_filter& f, const tenant_scope& scope,
                            int samples) {
  auto p = impl_->run("jobs plan", [&](pqxx::transaction_base& tx) {
    replay_plan p;
    auto res = tx.exec(
      "SELECT topic, tenant_id, count(*), " CES_RFC3339("min(received_at)")
      ", " CES_RFC3339("max(received_at)") " FROM event_journal WHERE "
      + where_of(tx, f, scope) + " GROUP BY topic, tenant_id");
    std::map<std::string, uint64_t> topics, tenants;
    for (const auto& r : res) {
      auto n = r[2].as<uint64_t>();
      p.matched += static_cast<int64_t>(n);
      topics[r[0].as<std::string>()] += n;
      tenants[r[1].as<std::string>()] += n;
      auto first = r[3].as<std::string>();
      auto last = r[4].as<std::string>();
      // Same format and zone: text order is time order.
      if (p.first_received_at.empty() || first < p.first_received_at)
        p.first_received_at = first;
      if (last > p.last_received_at)
        p.last_received_at = last;
    }
    for (auto& [k, n] : topics)
      p.by_topic.push_back({k, "", n});
    for (auto& [k, n] : tenants)
      p.by_tenant.push_back({k, "", n});
    return p;
  });
  if (p.matched > 0 && samples > 0)
    for (auto& e : this->samples(f, scope, samples)) {
      p.sample_ids.push_back(e.id);
      p.samples.push_back(std::move(e.payload));
    }
  return p;
}

std::vector<job_event> job_store::samples(const event_filter& f,
                                          const tenant_scope& scope, int n) {
  return impl_->run("jobs samples", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec(std::string{"SELECT "} + event_columns
                       + " FROM event_journal WHERE " + where_of(tx, f, scope)
                       + " ORDER BY id LIMIT " + std::to_string(n));
    std::vector<job_event> out;
    for (const auto& r : res)
      out.push_back(to_event(r));
    return out;
  });
}

job_row job_store::create(const std::string& kind, const replay_request& req,
                          const requester& who, audit_entry audit) {
  return impl_->run("jobs create", [&](pqxx::transaction_base& tx) {
    auto c = tx.exec1("SELECT count(*), coalesce(max(id), 0) FROM "
                      "event_journal WHERE "
                      + where_of(tx, req.filter, who.scope));
    auto matched = c[0].as<int64_t>();
    auto upto = c[1].as<int64_t>();
    if (matched > req.max_events)
      throw too_many_events(matched, req.max_events);
    std::optional<std::string> request_id;
    if (!who.request_id.empty())
      request_id = who.request_id;
    auto r = tx.exec_params1(
      std::string{"INSERT INTO jobs (kind, request, scope_all, scope_tenants,"
                  " upto_id, matched, requested_by, request_id)"
                  " VALUES ($1, $2::jsonb, $3, $4::text[], $5, $6, $7, $8)"
                  " RETURNING "}
        + job_columns,
      kind, req.body, who.scope.all, tenants_param(who.scope), upto, matched,
      who.principal.empty() ? std::string{"anonymous"} : who.principal,
      request_id);
    auto job = to_job(r);
    audit.target = "job/" + std::to_string(job.id);
    audit.counts = "{\"events\":" + std::to_string(matched) + "}";
    insert_audit(tx, audit);
    return job;
  });
}

dlq_plan job_store::plan_dlq(const dlq_bulk_request& req,
                             const tenant_scope& scope) {
  return impl_->run("jobs plan_dlq", [&](pqxx::transaction_base& tx) {
    dlq_plan p;
    auto where = dlq_where_of(tx, req, scope);
    auto res = tx.exec("SELECT error_class, topic, coalesce(tenant_id, ''),"
                       " count(*) FROM event_dlq WHERE "
                       + where + " GROUP BY 1, 2, 3");
    std::map<std::string, uint64_t> classes, topics, tenants;
    for (const auto& r : res) {
      auto n = r[3].as<uint64_t>();
      p.matched += static_cast<int64_t>(n);
      classes[r[0].as<std::string>()] += n;
      topics[r[1].as<std::string>()] += n;
      tenants[r[2].as<std::string>()] += n;
    }
    for (auto& [k, n] : classes)
      p.by_error_class.push_back({k, "", n});
    for (auto& [k, n] : topics)
      p.by_topic.push_back({k, "", n});
    for (auto& [k, n] : tenants)
      p.by_tenant.push_back({k, "", n});
    if (p.matched > 0)
      for (const auto& r : tx.exec("SELECT id FROM event_dlq WHERE " + where
                                   + " ORDER BY id LIMIT 10"))
        p.sample_ids.push_back(r[0].as<int64_t>());
    return p;
  });
}

job_row job_store::create_dlq(const dlq_bulk_request& req,
                              const requester& who, audit_entry audit) {
  return impl_->run("jobs create_dlq", [&](pqxx::transaction_base& tx) {
    auto upto = tx.exec1("SELECT coalesce(max(id), 0) FROM event_dlq")[0]
                  .as<int64_t>();
    auto matched = tx.exec1("SELECT count(*) FROM event_dlq WHERE id <= "
                            + std::to_string(upto) + " AND "
                            + dlq_where_of(tx, req, who.scope))[0]
                     .as<int64_t>();
    if (matched > req.max_events)
      throw too_many_events(matched, req.max_events);
    auto r = tx.exec_params1(
      std::string{"INSERT INTO jobs (kind, request, scope_all, scope_tenants,"
                  " upto_id, matched, requested_by, request_id,"
                  " scope_unknown_tenant, requested_role)"
                  " VALUES ($1, $2::jsonb, $3, $4::text[], $5, $6, $7, $8,"
                  " $9, $10) RETURNING "}
        + job_columns,
      "dlq_" + req.action, req.body, who.scope.all, tenants_param(who.scope),
      upto, matched,
      who.principal.empty() ? std::string{"anonymous"} : who.principal,
      opt_string(who.request_id), who.scope.unknown_tenant,
      opt_string(who.role));
    auto job = to_job(r);
    audit.target = "job/" + std::to_string(job.id);
    audit.counts = "{\"entries\":" + std::to_string(matched) + "}";
    insert_audit(tx, audit);
    return job;
  });
}

std::vector<int64_t> job_store::next_dlq_batch(const claimed_job& job,
                                               const dlq_bulk_request& req,
                                               int n) {
  return impl_->run("jobs next_dlq_batch", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params("SELECT id FROM event_dlq WHERE id > $1 AND"
                              " id <= $2 AND "
                                + dlq_where_of(tx, req, job.scope)
                                + " ORDER BY id LIMIT $3",
                              job.cursor_id, job.upto_id, n);
    std::vector<int64_t> out;
    out.reserve(res.size());
    for (const auto& r : res)
      out.push_back(r[0].as<int64_t>());
    return out;
  });
}

std::optional<job_row> job_store::get(int64_t id, const tenant_scope& scope) {
  return impl_->run("jobs get", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(std::string{"SELECT "} + job_columns
                                + " FROM jobs WHERE " + visible
                                + " AND id = $3",
                              scope.all, tenants_param(scope), id);
    std::optional<job_row> out;
    if (!res.empty())
      out = to_job(res[0]);
    return out;
  });
}

std::vector<job_row> job_store::list(const job_filter& f, int limit,
                                     int64_t before,
                                     const tenant_scope& scope) {
  return impl_->run("jobs list", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(
      std::string{"SELECT "} + job_columns + " FROM jobs WHERE " + visible
        // $3 is a 64-bit cursor: `$3 = 0` alone would type it integer.
        + " AND ($3::bigint = 0 OR id < $3::bigint)"
          " AND ($4 = '' OR status = $4)"
          " AND ($5 = '' OR kind = $5) ORDER BY id DESC LIMIT $6",
      scope.all, tenants_param(scope), before, f.status, f.kind, limit);
    std::vector<job_row> out;
    for (const auto& r : res)
      out.push_back(to_job(r));
    return out;
  });
}

std::optional<job_row> job_store::cancel(int64_t id,
                                         const tenant_scope& scope,
                                         audit_entry audit) {
  return impl_->run("jobs cancel", [&](pqxx::transaction_base& tx) {
    std::optional<job_row> out;
    auto res = tx.exec_params(std::string{"SELECT status FROM jobs WHERE "}
                                + visible + " AND id = $3 FOR UPDATE",
                              scope.all, tenants_param(scope), id);
    if (res.empty())
      return out;
    auto before = res[0][0].as<std::string>();
    if (before == "queued")
      tx.exec_params("UPDATE jobs SET status = 'cancelled',"
                     " cancel_requested = true, finished_at = now(),"
                     " updated_at = now() WHERE id = $1",
                     id);
    else if (before == "running")
      tx.exec_params("UPDATE jobs SET cancel_requested = true,"
                     " updated_at = now() WHERE id = $1",
                     id);
    out = to_job(tx.exec_params1(std::string{"SELECT "} + job_columns
                                   + " FROM jobs WHERE id = $1",
                                 id));
    audit.target = "job/" + std::to_string(id);
    // status is one of the five words of jobs_status_check.
    audit.parameters = "{\"status_before\":\"" + before + "\"}";
    insert_audit(tx, audit);
    return out;
  });
}

std::optional<claimed_job> job_store::claim() {
  return impl_->run("jobs claim", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(
      std::string{
        "UPDATE jobs SET status = 'running', owner = $1,"
        " heartbeat_at = now(), started_at = coalesce(started_at, now()),"
        " updated_at = now() WHERE id = (SELECT id FROM jobs"
        " WHERE status = 'queued' OR (status = 'running' AND"
        " (owner = $1 OR heartbeat_at IS NULL OR heartbeat_at < now() -"
        " $2::bigint * interval '1 millisecond')) ORDER BY id LIMIT 1"
        " FOR UPDATE SKIP LOCKED) RETURNING "}
        + job_columns,
      impl_->owner, static_cast<int64_t>(impl_->opts.lease.count()));
    std::optional<claimed_job> out;
    if (!res.empty())
      out = to_claimed(res[0]);
    return out;
  });
}

std::vector<job_event> job_store::next_batch(const claimed_job& job,
                                             const event_filter& f, int n) {
  return impl_->run("jobs next_batch", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(std::string{"SELECT "} + event_columns
                                + " FROM event_journal WHERE id > $1 AND"
                                  " id <= $2 AND "
                                + where_of(tx, f, job.scope)
                                + " ORDER BY id LIMIT $3",
                              job.cursor_id, job.upto_id, n);
    std::vector<job_event> out;
    out.reserve(res.size());
    for (const auto& r : res)
      out.push_back(to_event(r));
    return out;
  });
}

void job_store::record_replays(const job_row& job,
                               const std::vector<job_event>& events,
                               const std::string& topic) {
  if (events.empty())
    return;
  std::vector<int64_t> ids;
  std::vector<std::string> tenants, topics;
  for (auto& e : events) {
    ids.push_back(e.id);
    tenants.push_back(e.tenant_id);
    topics.push_back(topic.empty() ? e.topic : topic);
  }
  std::optional<std::string> request_id;
  if (!job.request_id.empty())
    request_id = job.request_id;
  impl_->run("jobs record_replays", [&](pqxx::transaction_base& tx) {
    // replay_id as ces::job_replay_id() makes it: j<job>-e<event>.
    tx.exec_params(
      "INSERT INTO replays (replay_id, event_id, tenant_id, topic, principal,"
      " job_id, request_id) SELECT 'j' || $1::bigint || '-e' || u.e, u.e,"
      " u.t, u.tp, $5, $1, $6 FROM unnest($2::bigint[], $3::text[],"
      " $4::text[]) AS u(e, t, tp) ON CONFLICT (replay_id) DO NOTHING",
      job.id, bigint_array(ids), detail::text_array(tenants),
      detail::text_array(topics), job.requested_by, request_id);
    return 0;
  });
}

progress_outcome job_store::commit_progress(int64_t id, int64_t cursor_id,
                                            int64_t done, int64_t failed,
                                            const std::string& last_error) {
  std::optional<std::string> err;
  if (!last_error.empty())
    err = last_error;
  return impl_->run("jobs progress", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(
      "UPDATE jobs SET cursor_id = $2, done = done + $3, failed = failed + $4,"
      " last_error = coalesce($5, last_error), heartbeat_at = now(),"
      " updated_at = now() WHERE id = $1 AND owner = $6 AND"
      " status = 'running' RETURNING cancel_requested",
      id, cursor_id, done, failed, err, impl_->owner);
    if (res.empty())
      return progress_outcome::lost;
    return res[0][0].as<bool>() ? progress_outcome::cancelled
                                : progress_outcome::ok;
  });
}

std::optional<job_row> job_store::finish(int64_t id, const std::string& status,
                                         const std::string& last_error) {
  std::optional<std::string> err;
  if (!last_error.empty())
    err = last_error;
  return impl_->run("jobs finish", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(
      std::string{"UPDATE jobs SET status = $2, finished_at = now(),"
                  " heartbeat_at = now(), updated_at = now(),"
                  " last_error = coalesce($3, last_error) WHERE id = $1 AND"
                  " owner = $4 AND status = 'running' RETURNING "}
        + job_columns,
      id, status, err, impl_->owner);
    std::optional<job_row> out;
    if (!res.empty())
      out = to_job(res[0]);
    return out;
  });
}

bool job_store::cancel_requested(int64_t id) {
  return impl_->run("jobs cancel_requested", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params("SELECT cancel_requested FROM jobs WHERE id = $1",
                              id);
    return !res.empty() && res[0][0].as<bool>();
  });
}

#undef CES_RFC3339

} // namespace ces::storage
