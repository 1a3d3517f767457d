#include "actors/jobs.hpp"

#include "api/filters.hpp"
#include "api/metrics.hpp"
#include "api/replay_json.hpp"
#include "api/transform.hpp"
#include "config/logging.hpp"

#include <algorithm>

namespace ces {

namespace {

using self_ptr = jobs_actor::stateful_pointer<jobs_state>;
using std::chrono::milliseconds;

/// Runs a store call; PostgreSQL trouble becomes db_unavailable.
template <class F>
auto guarded(F&& call) -> caf::result<decltype(call())> {
  try {
    return call();
  } catch (const storage::infra_error& e) {
    return caf::make_error(errc::db_unavailable, std::string{e.what()});
  }
}

caf::error bad(std::string msg, const char* code) {
  return caf::make_error(errc::bad_request, std::move(msg), std::string{code});
}

/// Forbidden when the filter names a tenant outside the scope.
std::optional<caf::error> out_of_scope(const std::string& tenant_id,
                                       const requester& who) {
  std::string why;
  if (api::filter_in_scope(tenant_id, who.scope, why))
    return std::nullopt;
  return caf::make_error(errc::forbidden, why);
}

std::optional<caf::error> out_of_scope(const replay_request& req,
                                       const requester& who) {
  return out_of_scope(req.filter.tenant_id, who);
}

/// bad_transform when the patch fails on one of `samples`; else the
/// transformed payloads in `out` (when given).
std::optional<caf::error>
check_samples(const replay_request& req,
              const std::vector<storage::job_event>& samples,
              std::vector<std::string>* out) {
  for (auto& e : samples) {
    std::string patched, why;
    if (req.transform.empty()) {
      patched = e.payload;
    } else if (!api::apply_patch(e.payload, req.transform, patched, why)) {
      return bad("the transform fails on event " + std::to_string(e.id) + ": "
                   + why,
                 "bad_transform");
    }
    if (out != nullptr)
      out->push_back(std::move(patched));
  }
  return std::nullopt;
}

void count(self_ptr self, const std::string& kind, const char* outcome,
           int64_t n) {
  if (n > 0 && self->state.stats != nullptr)
    self->state.stats->add_job_events(kind, outcome,
                                      static_cast<uint64_t>(n));
}

void schedule(self_ptr self, milliseconds delay) {
  auto& st = self->state;
  if (st.run_scheduled)
    return;
  st.run_scheduled = true;
  if (delay.count() <= 0)
    self->send(self, atom::internal_v, atom::run_v);
  else
    self->delayed_send(self, delay, atom::internal_v, atom::run_v);
}

void log_finished(const job_row& j, const char* event) {
  log::event(j.status == "succeeded" ? spdlog::level::info
                                     : spdlog::level::warn,
             "jobs", event,
             {{"job_id", j.id},
              {"kind", j.kind},
              {"status", j.status},
              {"matched", j.matched},
              {"done", j.done},
              {"failed", j.failed},
              {"principal", j.requested_by},
              {"request_id", j.request_id},
              {"last_error", j.last_error}});
}

/// Lets go of the current job (finished, lost to another instance, or left
/// for whoever claims it next): crm_jobs_running drops to 0.
void drop_current(self_ptr self) {
  auto& st = self->state;
  st.current.reset();
  if (st.stats != nullptr)
    st.stats->set_jobs_running(0);
}

/// Finishes the current job with `status`; logs it.
void finish_current(self_ptr self, const std::string& status,
                    const std::string& error) {
  auto& st = self->state;
  auto id = st.current->job.row.id;
  auto kind = st.current->job.row.kind;
  drop_current(self);
  if (auto row = st.store->finish(id, status, error)) {
    if (st.stats != nullptr)
      st.stats->add_job_finished(kind, status);
    log_finished(*row, status == "cancelled" ? "job_cancelled"
                                              : "job_finished");
  } else
    log::event(spdlog::level::warn, "jobs", "job_lost",
               {{"job_id", id}, {"reason", "no longer ours"}});
}

/// Claims a job to run; false when there is none.
bool claim(self_ptr self, const jobs_settings& cfg) {
  auto& st = self->state;
  auto job = st.store->claim();
  if (!job)
    return false;
  jobs_state::running r;
  r.job = std::move(*job);
  api::filter_error err;
  api::replay_defaults defaults;
  defaults.max_events = cfg.default_max_events;
  st.current = std::move(r);
  if (st.stats != nullptr)
    st.stats->set_jobs_running(1);
  auto& cur = *st.current;
  auto& kind = cur.job.row.kind;
  cur.is_dlq = kind == "dlq_retry" || kind == "dlq_discard";
  auto parsed = cur.is_dlq
                  ? api::parse_dlq_bulk_request(cur.job.row.request,
                                                kind.substr(4), defaults,
                                                cur.dlq, err)
                  : api::parse_replay_request(cur.job.row.request, defaults,
                                              cur.req, err);
  if (!parsed) {
    finish_current(self, "failed",
                   "stored request unreadable: " + err.message);
    return true;
  }
  if (cur.job.row.cancel_requested) {
    finish_current(self, "cancelled", "");
    return true;
  }
  int64_t budget = cfg.rate_per_tenant;
  int64_t asked = cur.is_dlq ? 0 : cur.req.rate_per_s;
  cur.rate = asked > 0 && (budget <= 0 || asked < budget) ? asked : budget;
  log::event(spdlog::level::info, "jobs", "job_started",
             {{"job_id", cur.job.row.id},
              {"kind", cur.job.row.kind},
              {"matched", cur.job.row.matched},
              {"cursor_id", cur.job.cursor_id},
              {"upto_id", cur.job.upto_id},
              {"rate_per_s", cur.rate},
              {"resumed", cur.job.cursor_id > 0},
              {"principal", cur.job.row.requested_by},
              {"request_id", cur.job.row.request_id}});
  return true;
}

/// Publishes `events` of the current job and waits for their delivery
/// reports (st.delivered, st.undelivered); counts transform failures in
/// `failed` and `error`.
void publish(self_ptr self, const jobs_settings& cfg,
             const std::vector<storage::job_event>& events, int64_t& failed,
             std::string& error) {
  auto& st = self->state;
  auto& cur = *st.current;
  auto job_id = cur.job.row.id;
  st.delivered = 0;
  st.undelivered = 0;
  st.delivery_error.clear();
  st.batch_first_token = st.next_token;
  auto retarget = !cur.req.target_topic.empty();
  for (auto& e : events) {
    const std::string* payload = &e.payload;
    std::string patched, why;
    if (!cur.req.transform.empty()) {
      if (!api::apply_patch(e.payload, cur.req.transform, patched, why)) {
        ++failed;
        error = "event " + std::to_string(e.id) + ": " + why;
        continue;
      }
      payload = &patched;
    }
    auto headers = replay_headers(e.headers, e.id, job_replay_id(job_id, e.id),
                                  job_id, e.kafka_timestamp_ms);
    for (;;) {
      auto sent = st.producer->produce(
        retarget ? cur.req.target_topic : e.topic, e.has_key, e.key, headers,
        *payload, st.next_token++, retarget ? -1 : e.partition);
      if (sent.ok)
        break;
      if (sent.queue_full) {
        st.producer->poll(100); // serve reports: frees the local queue
        continue;
      }
      ++st.undelivered;
      st.delivery_error = sent.error_name + ": " + sent.error;
      break;
    }
  }
  // Every produced message gets its report within message.timeout.ms; the
  // bound is a safety net only.
  auto deadline = std::chrono::steady_clock::now()
                  + milliseconds(cfg.producer.message_timeout_ms + 5000);
  while (st.producer->in_flight() > 0
         && std::chrono::steady_clock::now() < deadline)
    st.producer->flush(200);
  if (auto left = st.producer->in_flight(); left > 0) {
    st.undelivered += left;
    st.delivery_error = "no delivery report";
  }
}

/// The requester a bulk DLQ job acts as: its creator, scope and role.
requester job_requester(const jobs_state::running& cur) {
  requester who;
  who.principal = cur.job.row.requested_by;
  who.role = cur.job.role;
  who.scope = cur.job.scope;
  who.request_id = cur.job.row.request_id;
  return who;
}

/// Retries `ids` into the journal (journal mode), the transform applied to
/// each row's stored bytes first; counts in `done`, `failed`, `error`.
void retry_journal(self_ptr self, const std::vector<int64_t>& ids,
                   const requester& who, int64_t& done, int64_t& failed,
                   std::string& error) {
  auto& st = self->state;
  auto& req = st.current->dlq;
  for (auto id : ids) {
    std::optional<std::string> bytes;
    if (!req.transform.empty()) {
      auto row = st.dlq_store->load(id, who.scope);
      if (!row)
        continue; // gone (purged) or out of scope: nothing to count
      std::string patched, why;
      if (!row->has_payload
          || !api::apply_patch(row->payload, req.transform, patched, why,
                               false)) {
        ++failed;
        error = "dlq " + std::to_string(id) + ": the transform fails: "
                + (row->has_payload ? why : std::string{"no payload"});
        continue;
      }
      bytes = std::move(patched);
    }
    auto r = st.dlq_store->retry_journal(id, bytes, who);
    if (r.outcome == storage::dlq_outcome::ok) {
      ++done;
      continue;
    }
    if (r.outcome == storage::dlq_outcome::not_found
        || r.outcome == storage::dlq_outcome::closed)
      continue; // purged, resolved or discarded meanwhile: not this job's
    ++failed;
    error = "dlq " + std::to_string(id) + ": " + to_string(r.outcome);
    if (!r.error_class.empty())
      error += " (" + r.error_class + ")";
    if (!r.error.empty())
      error += ": " + r.error;
  }
}

/// Republishes `ids` to their topics with the JOBS producer (stored bytes,
/// key and headers plus x-dlq-id), waits for the delivery reports and
/// resolves each delivered row (finish_republish); counts in `done`,
/// `failed`, `error`.
void republish(self_ptr self, const jobs_settings& cfg,
               const std::vector<int64_t>& ids, const requester& who,
               int64_t& done, int64_t& failed, std::string& error) {
  auto& st = self->state;
  st.report_errors.clear();
  st.delivered = 0;
  st.undelivered = 0;
  st.batch_first_token = st.next_token;
  std::vector<std::pair<uint64_t, int64_t>> sent; // token, DLQ id
  for (auto id : ids) {
    auto outcome = storage::dlq_outcome::ok;
    auto row = st.dlq_store->begin_republish(id, who, outcome);
    if (!row) {
      if (outcome != storage::dlq_outcome::not_found) {
        ++failed;
        error = "dlq " + std::to_string(id) + ": " + to_string(outcome);
      }
      continue;
    }
    auto headers = dlq_republish_headers(row->headers, id);
    auto token = st.next_token++;
    for (;;) {
      auto r = st.producer->produce(
        row->topic, row->has_key, row->key, headers,
        row->has_payload ? row->payload : std::string{}, token,
        row->has_partition ? row->partition : -1);
      if (r.ok) {
        sent.emplace_back(token, id);
        break;
      }
      if (r.queue_full) {
        st.producer->poll(100);
        continue;
      }
      st.report_errors[token] = r.error_name + ": " + r.error;
      sent.emplace_back(token, id);
      break;
    }
  }
  auto deadline = std::chrono::steady_clock::now()
                  + milliseconds(cfg.producer.message_timeout_ms + 5000);
  while (st.producer->in_flight() > 0
         && std::chrono::steady_clock::now() < deadline)
    st.producer->flush(200);
  // A message without a report, or timed out, may be on the broker all the
  // same: its row stays `retried` (republished again or discarded later,
  // never journalled: it cannot become two journal rows). A refusal is
  // definite: the row is pending again.
  for (auto& [token, id] : sent) {
    auto e = st.report_errors.find(token);
    bool ok = e != st.report_errors.end() && e->second.empty();
    std::string why = e == st.report_errors.end() ? "no delivery report"
                                                  : e->second;
    bool unknown = e == st.report_errors.end()
                   || why.rfind("_MSG_TIMED_OUT", 0) == 0;
    if (ok || !unknown)
      st.dlq_store->finish_republish(id, ok, ok ? std::string{} : why, who);
    if (ok) {
      ++done;
    } else {
      ++failed;
      error = "dlq " + std::to_string(id) + ": " + why;
    }
  }
}

/// One batch of a bulk DLQ job: discard, retry into the journal, or
/// republish the next open entries; then commit the cursor and counts.
void run_dlq(self_ptr self, const jobs_settings& cfg) {
  auto& st = self->state;
  auto& cur = *st.current;
  auto ids = st.store->next_dlq_batch(cur.job, cur.dlq, cfg.batch_size);
  if (ids.empty()) {
    auto failed = cur.job.row.failed > 0;
    finish_current(self, failed ? "failed" : "succeeded", "");
    schedule(self, milliseconds{0});
    return;
  }
  auto who = job_requester(cur);
  int64_t done = 0;
  int64_t failed = 0;
  std::string error;
  const char* action = "discard";
  if (cur.dlq.action == "discard") {
    done = st.dlq_store->discard_many(ids, cur.dlq.reason, who);
  } else if (cur.dlq.mode == "republish") {
    action = "republish";
    republish(self, cfg, ids, who, done, failed, error);
    if (auto fatal = st.producer->fatal_error(); !fatal.empty()) {
      self->quit(caf::make_error(errc::kafka_fatal, fatal));
      return;
    }
  } else {
    action = "retry";
    retry_journal(self, ids, who, done, failed, error);
  }
  auto& kind = cur.job.row.kind;
  auto outcome = st.store->commit_progress(cur.job.row.id, ids.back(), done,
                                           failed, error);
  count(self, kind, "done", done);
  count(self, kind, "failed", failed);
  if (st.stats != nullptr) {
    if (done > 0)
      st.stats->add_dlq_actions(action, "ok", static_cast<uint64_t>(done));
    if (failed > 0)
      st.stats->add_dlq_actions(action, "refused",
                                static_cast<uint64_t>(failed));
  }
  log::event(spdlog::level::debug, "jobs", "job_batch",
             {{"job_id", cur.job.row.id},
              {"kind", kind},
              {"entries", static_cast<int64_t>(ids.size())},
              {"done", done},
              {"failed", failed}});
  if (outcome == storage::progress_outcome::lost) {
    log::event(spdlog::level::warn, "jobs", "job_lost",
               {{"job_id", cur.job.row.id}, {"reason", "no longer ours"}});
    drop_current(self);
    schedule(self, milliseconds{0});
    return;
  }
  cur.job.cursor_id = ids.back();
  cur.job.row.done += done;
  cur.job.row.failed += failed;
  if (outcome == storage::progress_outcome::cancelled) {
    finish_current(self, "cancelled", "");
    schedule(self, milliseconds{0});
    return;
  }
  schedule(self, milliseconds{0});
}

/// One step of the job loop: claim a job when there is none, else run its
/// next batch.
void run(self_ptr self, const jobs_settings& cfg) {
  auto& st = self->state;
  if (!st.current) {
    if (!claim(self, cfg)) {
      schedule(self, cfg.idle_poll);
      return;
    }
    if (!st.current) { // finished at once (cancelled, unreadable)
      schedule(self, milliseconds{0});
      return;
    }
  }
  if (st.current->is_dlq) {
    run_dlq(self, cfg);
    return;
  }
  auto& cur = *st.current;
  auto started = std::chrono::steady_clock::now();
  int n = cfg.batch_size;
  if (cur.rate > 0)
    n = static_cast<int>(std::min<int64_t>(n, std::max<int64_t>(1, cur.rate)));
  auto batch = st.store->next_batch(cur.job, cur.req.filter, n);
  auto t_read = std::chrono::steady_clock::now();
  if (batch.empty()) {
    auto failed = cur.job.row.failed > 0;
    finish_current(self, failed ? "failed" : "succeeded", "");
    schedule(self, milliseconds{0});
    return;
  }
  // Recorded before publishing: the journal honours provenance headers only
  // for recorded replays.
  st.store->record_replays(cur.job.row, batch, cur.req.target_topic);
  auto t_recorded = std::chrono::steady_clock::now();
  int64_t failed = 0;
  std::string error;
  publish(self, cfg, batch, failed, error);
  auto t_published = std::chrono::steady_clock::now();
  if (auto fatal = st.producer->fatal_error(); !fatal.empty()) {
    // Nothing committed: the job resumes at its cursor after the restart.
    self->quit(caf::make_error(errc::kafka_fatal, fatal));
    return;
  }
  if (st.undelivered > 0 && ++cur.attempts < cfg.delivery_attempts) {
    // Publish the batch again (a resend of a delivered event carries the
    // same replay id: ingest drops it).
    log::event(spdlog::level::warn, "jobs", "job_batch_retry",
               {{"job_id", cur.job.row.id},
                {"undelivered", st.undelivered},
                {"attempt", cur.attempts},
                {"reason", st.delivery_error}});
    schedule(self, cfg.retry_delay);
    return;
  }
  cur.attempts = 0;
  failed += st.undelivered;
  if (st.undelivered > 0)
    error = st.delivery_error;
  auto& kind = cur.job.row.kind;
  auto outcome = st.store->commit_progress(cur.job.row.id, batch.back().id,
                                           st.delivered, failed, error);
  count(self, kind, "published", st.delivered);
  count(self, kind, "failed", failed);
  auto ms = [](auto a, auto b) {
    return std::chrono::duration_cast<std::chrono::microseconds>(b - a).count()
           / 1000.0;
  };
  log::event(spdlog::level::debug, "jobs", "job_batch",
             {{"job_id", cur.job.row.id},
              {"events", static_cast<int64_t>(batch.size())},
              {"read_ms", ms(started, t_read)},
              {"record_ms", ms(t_read, t_recorded)},
              {"publish_ms", ms(t_recorded, t_published)},
              {"commit_ms", ms(t_published, std::chrono::steady_clock::now())}});
  if (outcome == storage::progress_outcome::lost) {
    log::event(spdlog::level::warn, "jobs", "job_lost",
               {{"job_id", cur.job.row.id}, {"reason", "no longer ours"}});
    drop_current(self);
    schedule(self, milliseconds{0});
    return;
  }
  cur.job.cursor_id = batch.back().id;
  cur.job.row.done += st.delivered;
  cur.job.row.failed += failed;
  if (outcome == storage::progress_outcome::cancelled) {
    finish_current(self, "cancelled", "");
    schedule(self, milliseconds{0});
    return;
  }
  auto delay = milliseconds{0};
  if (cur.rate > 0) {
    auto due = milliseconds(static_cast<int64_t>(batch.size()) * 1000
                            / cur.rate);
    auto spent = std::chrono::duration_cast<milliseconds>(
      std::chrono::steady_clock::now() - started);
    if (due > spent)
      delay = due - spent;
  }
  schedule(self, delay);
}

} // namespace

jobs_actor::behavior_type jobs(jobs_actor::stateful_pointer<jobs_state> self,
                               jobs_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.stats = stats;
  if (stats != nullptr) // a restarted JOBS runs nothing yet
    stats->set_jobs_running(0);
  storage::job_store_options so;
  so.lease = cfg.lease;
  st.store = std::make_unique<storage::job_store>(cfg.database_url, cfg.owner,
                                                  so);
  st.dlq_store = std::make_unique<storage::dlq_store>(cfg.database_url,
                                                      cfg.dlq);
  // Throws on a bad property: a failed start, restarted with backoff.
  st.producer = std::make_unique<replay_producer>(
    cfg.producer, [self](const delivery_report& r) {
      auto& st = self->state;
      if (r.token < st.batch_first_token)
        return; // an earlier batch's, counted undelivered there
      if (r.ok) {
        ++st.delivered;
      } else {
        ++st.undelivered;
        st.delivery_error = r.error_name + ": " + r.error;
      }
      if (st.current && st.current->is_dlq)
        st.report_errors[r.token] = r.ok ? std::string{} : st.delivery_error;
    });
  schedule(self, milliseconds{0});
  return {
    [=](atom::plan, const replay_request& req,
        const requester& who) -> caf::result<replay_plan> {
      if (auto err = out_of_scope(req, who))
        return std::move(*err);
      auto& st = self->state;
      try {
        auto p = st.store->plan(req.filter, who.scope, 0);
        auto samples = st.store->samples(req.filter, who.scope, 5);
        std::vector<std::string> payloads;
        if (auto err = check_samples(req, samples, &payloads))
          return std::move(*err);
        for (size_t i = 0; i < samples.size(); ++i) {
          p.sample_ids.push_back(samples[i].id);
          p.samples.push_back(std::move(payloads[i]));
        }
        return p;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::create, const replay_request& req,
        const requester& who) -> caf::result<job_row> {
      if (auto err = out_of_scope(req, who))
        return std::move(*err);
      auto& st = self->state;
      try {
        if (!req.transform.empty())
          if (auto err = check_samples(
                req, st.store->samples(req.filter, who.scope, 5), nullptr))
            return std::move(*err);
        audit_entry a;
        a.who = who;
        a.action = "replay.job";
        a.parameters = req.body;
        a.outcome = "ok";
        a.status = 202;
        auto job = st.store->create("replay", req, who, a);
        log::event(spdlog::level::info, "jobs", "job_created",
                   {{"job_id", job.id},
                    {"matched", job.matched},
                    {"principal", job.requested_by},
                    {"request_id", job.request_id}});
        if (!st.current)
          schedule(self, milliseconds{0});
        return job;
      } catch (const storage::too_many_events& e) {
        return bad(e.what(), "too_many_events");
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::get, int64_t id, const requester& who) -> caf::result<job_row> {
      try {
        if (auto j = self->state.store->get(id, who.scope))
          return *j;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
      return caf::make_error(errc::not_found,
                             "no job " + std::to_string(id));
    },
    [=](atom::list, const job_filter& f, int32_t limit, int64_t before,
        const requester& who) -> caf::result<std::vector<job_row>> {
      return guarded([&] {
        return self->state.store->list(f, limit, before, who.scope);
      });
    },
    [=](atom::cancel, int64_t id,
        const requester& who) -> caf::result<job_row> {
      auto& st = self->state;
      try {
        audit_entry a;
        a.who = who;
        a.action = "job.cancel";
        a.outcome = "ok";
        a.status = 200;
        auto j = st.store->cancel(id, who.scope, a);
        if (!j)
          return caf::make_error(errc::not_found,
                                 "no job " + std::to_string(id));
        // Our own running job stops now, between two batches.
        if (st.current && st.current->job.row.id == id
            && j->status == "running") {
          finish_current(self, "cancelled", "");
          schedule(self, milliseconds{0});
          if (auto now = st.store->get(id, who.scope))
            return *now;
        }
        return *j;
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::plan, const dlq_bulk_request& req,
        const requester& who) -> caf::result<dlq_plan> {
      if (auto err = out_of_scope(req.filter.tenant_id, who))
        return std::move(*err);
      return guarded(
        [&] { return self->state.store->plan_dlq(req, who.scope); });
    },
    [=](atom::create, const dlq_bulk_request& req,
        const requester& who) -> caf::result<job_row> {
      if (auto err = out_of_scope(req.filter.tenant_id, who))
        return std::move(*err);
      auto& st = self->state;
      try {
        audit_entry a;
        a.who = who;
        a.action = "dlq." + req.action + ".job";
        a.parameters = req.body;
        a.outcome = "ok";
        a.status = 202;
        auto job = st.store->create_dlq(req, who, a);
        log::event(spdlog::level::info, "jobs", "job_created",
                   {{"job_id", job.id},
                    {"kind", job.kind},
                    {"matched", job.matched},
                    {"principal", job.requested_by},
                    {"request_id", job.request_id}});
        if (!st.current)
          schedule(self, milliseconds{0});
        return job;
      } catch (const storage::too_many_events& e) {
        return bad(e.what(), "too_many_events");
      } catch (const storage::infra_error& e) {
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::internal, atom::run) {
      auto& st = self->state;
      st.run_scheduled = false;
      try {
        run(self, cfg);
        st.db_failures = 0;
      } catch (const storage::infra_error& e) {
        log::event(spdlog::level::warn, "jobs", "job_db_error",
                   {{"job_id", st.current ? st.current->job.row.id : 0},
                    {"reason", e.what()},
                    {"attempt", st.db_failures + 1}});
        // A job whose batches keep failing (a statement that always times
        // out, a deterministic error) ends failed instead of running for
        // ever; a PostgreSQL outage ends the same way after
        // max_db_failures, and the job can be created again.
        if (st.current && ++st.db_failures >= cfg.max_db_failures) {
          st.db_failures = 0;
          try {
            finish_current(self, "failed",
                           std::string{"PostgreSQL kept failing: "}
                             + e.what());
          } catch (const storage::infra_error&) {
            drop_current(self); // resumed later by whoever claims it
          }
        }
        // Nothing committed: the batch is read and published again.
        schedule(self, cfg.retry_delay);
      }
    },
  };
}

} // namespace ces
