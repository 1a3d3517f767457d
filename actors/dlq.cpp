#include "actors/dlq.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "api/transform.hpp"
#include "storage/journal_reader.hpp"

#include <stdexcept>

namespace ces {

namespace {

class store_reader : public dlq_reader {
public:
  explicit store_reader(const std::string& url) : reader_(url) {
  }
  int64_t pending_count() override {
    return reader_.pending_dlq_count();
  }
  std::vector<storage::dlq_entry_row>
  latest(int32_t limit, const tenant_scope& scope) override {
    return reader_.latest_dlq(limit, scope);
  }
  std::vector<storage::dlq_entry_row>
  find(const dlq_filter& f, const tenant_scope& scope, int32_t limit,
       int64_t before_id) override {
    return reader_.find_dlq(f, scope, limit, before_id);
  }
  std::vector<storage::dlq_entry_row>
  get(int64_t id, const tenant_scope& scope) override {
    std::vector<storage::dlq_entry_row> out;
    if (auto d = reader_.dlq_by_id(id, scope))
      out.push_back(std::move(*d));
    return out;
  }

private:
  storage::journal_reader reader_;
};

/// Runs a read on the reader (made first if needed); a PostgreSQL failure
/// drops the reader (a new one reconnects) and becomes db_unavailable.
template <class F>
caf::result<std::vector<storage::dlq_entry_row>>
read_dlq(dlq_actor::stateful_pointer<dlq_state> self, F&& f) {
  auto& st = self->state;
  try {
    if (!st.reader)
      st.reader = st.make_reader();
    return f(*st.reader);
  } catch (const storage::infra_error& e) {
    st.reader.reset();
    return caf::make_error(errc::db_unavailable, std::string{e.what()});
  }
}

class store_writer : public dlq_writer {
public:
  store_writer(const std::string& url, storage::dlq_store_options opts)
    : store_(url, std::move(opts)) {
  }
  std::optional<storage::dlq_entry_row>
  load(int64_t id, const tenant_scope& scope) override {
    return store_.load(id, scope);
  }
  storage::dlq_retry_outcome
  retry_journal(int64_t id, const std::optional<std::string>& bytes,
                const requester& who,
                const storage::dlq_retry_policy* policy) override {
    return store_.retry_journal(id, bytes, who, policy);
  }
  std::optional<storage::dlq_entry_row>
  begin_republish(int64_t id, const requester& who,
                  storage::dlq_outcome& outcome) override {
    return store_.begin_republish(id, who, outcome);
  }
  void finish_republish(int64_t id, bool delivered, const std::string& error,
                        const requester& who) override {
    store_.finish_republish(id, delivered, error, who);
  }
  std::optional<storage::dlq_entry_row>
  discard(int64_t id, const std::string& reason, const requester& who,
          storage::dlq_outcome& outcome) override {
    return store_.discard(id, reason, who, outcome);
  }
  int64_t purge(const std::string& status, const std::string& before,
                const requester& who) override {
    return store_.purge(status, before, who);
  }
  std::vector<int64_t> due_for_retry(const storage::dlq_retry_policy& policy,
                                     int limit) override {
    return store_.due_for_retry(policy, limit);
  }

private:
  storage::dlq_store store_;
};

using self_ptr = dlq_actor::stateful_pointer<dlq_state>;

/// The writer, made first if needed; nullptr without a factory.
dlq_writer* writer_of(self_ptr self) {
  auto& st = self->state;
  if (!st.writer && st.make_writer)
    st.writer = st.make_writer();
  return st.writer.get();
}

void count_action(self_ptr self, const char* action, const char* outcome,
                  uint64_t n = 1) {
  if (auto m = self->state.stats)
    m->add_dlq_actions(action, outcome, n);
}

caf::error no_entry(int64_t id) {
  return caf::make_error(errc::not_found,
                         "no DLQ entry " + std::to_string(id));
}

caf::error closed_entry(int64_t id, const std::string& status) {
  auto what = status == "retried" ? std::string{"being republished"}
              : status.empty()    ? std::string{"closed"}
                                  : status;
  return caf::make_error(errc::conflict,
                         "DLQ entry " + std::to_string(id) + " is " + what,
                         std::string{"conflict"});
}

/// The error of a refused action (not ok), by the store's outcome.
caf::error refusal(int64_t id, const storage::dlq_retry_outcome& o) {
  switch (o.outcome) {
    case storage::dlq_outcome::not_found:
      return no_entry(id);
    case storage::dlq_outcome::closed:
      return closed_entry(id, o.error_class.empty() ? o.error : o.error_class);
    case storage::dlq_outcome::still_invalid:
      return caf::make_error(
        errc::unprocessable,
        "DLQ entry " + std::to_string(id) + " is still invalid ("
          + o.error_class + "): " + o.error + "; attempts "
          + std::to_string(o.attempts),
        std::string{"still_invalid"});
    case storage::dlq_outcome::out_of_scope:
      return caf::make_error(errc::forbidden,
                             "the fixed payload of DLQ entry "
                               + std::to_string(id) + " names tenant '"
                               + o.tenant_id
                               + "', outside the caller's scope");
    case storage::dlq_outcome::ok:
      break;
  }
  return caf::make_error(errc::conflict, "unexpected outcome");
}

/// journal mode: the bytes to validate (none: the stored ones), or the
/// error that answers the request.
caf::expected<std::optional<std::string>>
bytes_to_retry(dlq_writer& w, const dlq_retry_request& rq,
               const requester& who) {
  if (rq.has_payload)
    return std::optional<std::string>{rq.payload};
  if (rq.transform.empty())
    return std::optional<std::string>{};
  auto row = w.load(rq.id, who.scope);
  if (!row)
    return no_entry(rq.id);
  if (row->status == "resolved" || row->status == "discarded")
    return closed_entry(rq.id, row->status);
  auto id_text = std::to_string(rq.id);
  if (!row->has_payload)
    return caf::make_error(errc::bad_request,
                           "DLQ entry " + id_text
                             + " has a null payload: nothing to transform",
                           std::string{"bad_transform"});
  std::string patched, why;
  // Fixing a dead letter may add or correct its tenant: the store checks
  // the result against the scope (out_of_scope).
  if (!api::apply_patch(row->payload, rq.transform, patched, why, false))
    return caf::make_error(errc::bad_request,
                           "DLQ entry " + id_text + ": " + why,
                           std::string{"bad_transform"});
  return std::optional<std::string>{std::move(patched)};
}

caf::result<dlq_retry_result> retry_journal(self_ptr self,
                                            const dlq_retry_request& rq,
                                            const requester& who) {
  auto w = writer_of(self);
  if (w == nullptr)
    return caf::make_error(errc::db_unavailable, "no DLQ store");
  auto bytes = bytes_to_retry(*w, rq, who);
  if (!bytes) {
    count_action(self, "retry", "refused");
    return std::move(bytes.error());
  }
  auto o = w->retry_journal(rq.id, *bytes, who, nullptr);
  if (o.outcome != storage::dlq_outcome::ok) {
    count_action(self, "retry", "refused");
    // attempts + 1 on still_invalid: the row changed; log it.
    log::event(spdlog::level::info, "dlq", "dlq_retry_refused",
               {{"dlq_id", rq.id},
                {"mode", "journal"},
                {"outcome", storage::to_string(o.outcome)},
                {"error_class", o.error_class},
                {"attempts", o.attempts},
                {"principal", who.principal},
                {"request_id", who.request_id}});
    return refusal(rq.id, o);
  }
  count_action(self, "retry", "ok");
  log::event(spdlog::level::info, "dlq", "dlq_retried",
             {{"dlq_id", rq.id},
              {"mode", "journal"},
              {"event_id", o.event_id},
              {"topic", o.topic},
              {"tenant", o.tenant_id},
              {"attempts", o.attempts},
              {"fixed", rq.has_payload ? "payload"
                        : rq.transform.empty() ? "none"
                                               : "transform"},
              {"principal", who.principal},
              {"request_id", who.request_id}});
  dlq_retry_result r;
  r.dlq_id = rq.id;
  r.status = "resolved";
  r.mode = "journal";
  r.event_id = o.event_id;
  r.tenant_id = o.tenant_id;
  r.topic = o.topic;
  r.attempts = o.attempts;
  return r;
}

/// Step 2 of a republish: records the delivery outcome. A PostgreSQL
/// failure here is logged: the row stays `retried` and opens again after
/// the store's republish_stale.
bool finish(self_ptr self, int64_t id, bool delivered,
            const std::string& error, const requester& who) {
  try {
    if (auto w = writer_of(self)) {
      w->finish_republish(id, delivered, error, who);
      return true;
    }
  } catch (const storage::infra_error& e) {
    log::event(spdlog::level::err, "dlq", "dlq_republish_unrecorded",
               {{"dlq_id", id},
                {"delivered", delivered},
                {"principal", who.principal},
                {"request_id", who.request_id},
                {"reason", e.what()}});
  }
  return false;
}

/// Answers one republish from its delivery report.
void on_delivery(self_ptr self, const delivery_report& r) {
  auto& st = self->state;
  auto i = st.in_flight.find(r.token);
  if (i == st.in_flight.end())
    return;
  auto p = std::move(i->second);
  st.in_flight.erase(i);
  if (!r.ok) {
    auto why = r.error_name + ": " + r.error;
    // A timed-out message may be on the broker all the same: the row stays
    // `retried` (republished again or discarded later, never journalled,
    // so that it cannot become two journal rows). A refusal is definite.
    if (r.error_name != "_MSG_TIMED_OUT")
      finish(self, p.id, false, "republish failed: " + why, p.who);
    count_action(self, "republish", "failed");
    log::event(spdlog::level::warn, "dlq", "dlq_republish_failed",
               {{"dlq_id", p.id},
                {"topic", p.topic},
                {"principal", p.who.principal},
                {"request_id", p.who.request_id},
                {"reason", why}});
    p.promise.deliver(caf::make_error(r.error_name == "_MSG_TIMED_OUT"
                                        ? errc::delivery_timeout
                                        : errc::delivery_failed,
                                      why));
    return;
  }
  if (!finish(self, p.id, true, "", p.who)) {
    count_action(self, "republish", "failed");
    p.promise.deliver(caf::make_error(
      errc::db_unavailable,
      "DLQ entry " + std::to_string(p.id) + " was republished (partition "
        + std::to_string(r.partition) + ", offset " + std::to_string(r.offset)
        + ") but could not be marked resolved; it stays retried"));
    return;
  }
  count_action(self, "republish", "ok");
  log::event(spdlog::level::info, "dlq", "dlq_retried",
             {{"dlq_id", p.id},
              {"mode", "republish"},
              {"topic", p.topic},
              {"partition", r.partition},
              {"offset", r.offset},
              {"attempts", p.attempts},
              {"principal", p.who.principal},
              {"request_id", p.who.request_id}});
  dlq_retry_result res;
  res.dlq_id = p.id;
  res.status = "resolved";
  res.mode = "republish";
  res.topic = p.topic;
  res.partition = r.partition;
  res.offset = r.offset;
  res.attempts = p.attempts;
  p.promise.deliver(std::move(res));
}

void schedule_poll(self_ptr self) {
  auto& st = self->state;
  if (st.polling || st.in_flight.empty())
    return;
  st.polling = true;
  self->delayed_send(self, st.cfg.poll_interval, atom::internal_v,
                     atom::poll_v);
}

/// A fatal producer error: the republishes in flight are answered (their
/// rows stay `retried`: the outcome is unknown) and the producer is made
/// again on the next republish.
void check_fatal(self_ptr self) {
  auto& st = self->state;
  if (!st.producer)
    return;
  auto fatal = st.producer->fatal_error();
  if (fatal.empty())
    return;
  log::event(spdlog::level::err, "dlq", "dlq_producer_failed",
             {{"in_flight", static_cast<int64_t>(st.in_flight.size())},
              {"reason", fatal}});
  for (auto& [token, p] : st.in_flight) {
    count_action(self, "republish", "failed");
    p.promise.deliver(caf::make_error(errc::broker_unavailable,
                                      "republish producer failed: " + fatal));
  }
  st.in_flight.clear();
  st.producer.reset();
}

caf::result<dlq_retry_result> republish(self_ptr self, int64_t id,
                                        const requester& who) {
  auto& st = self->state;
  auto w = writer_of(self);
  if (w == nullptr)
    return caf::make_error(errc::db_unavailable, "no DLQ store");
  if (!st.producer) {
    try {
      st.producer = std::make_unique<replay_producer>(
        st.cfg.producer,
        [self](const delivery_report& r) { on_delivery(self, r); });
    } catch (const std::exception& e) {
      count_action(self, "republish", "failed");
      return caf::make_error(errc::broker_unavailable,
                             std::string{"republish producer: "} + e.what());
    }
  }
  // Fail fast, before the row is touched, while the broker is known to be
  // away (as the REPLAYER does).
  st.producer->poll(0);
  if (!st.producer->last_error().empty()) {
    std::string why;
    if (!st.producer->reachable(st.cfg.ping_timeout_ms, why)) {
      count_action(self, "republish", "failed");
      return caf::make_error(errc::broker_unavailable,
                             "broker unreachable: " + why);
    }
  }
  auto outcome = storage::dlq_outcome::not_found;
  auto row = w->begin_republish(id, who, outcome);
  if (!row) {
    count_action(self, "republish", "refused");
    storage::dlq_retry_outcome o;
    o.outcome = outcome;
    return refusal(id, o);
  }
  auto token = st.next_token++;
  // The bytes as received (a null value goes out empty), with the row's
  // key, headers and partition.
  auto sent = st.producer->produce(
    row->topic, row->has_key, row->key, dlq_republish_headers(row->headers, id),
    row->payload, token, row->has_partition ? row->partition : -1);
  if (!sent.ok) {
    auto why = sent.error_name + ": " + sent.error;
    finish(self, id, false, "republish failed: " + why, who);
    count_action(self, "republish", "failed");
    return caf::make_error(errc::broker_unavailable, why);
  }
  auto rp = self->make_response_promise<dlq_retry_result>();
  st.in_flight.emplace(token, dlq_state::republish{rp, id, row->topic,
                                                   row->attempts, who});
  schedule_poll(self);
  return rp;
}

/// One automatic retry tick: at most retry_batch due rows, each retried
/// into the journal with the policy. Never throws: a PostgreSQL failure
/// ends the tick (counted as error) and the next tick tries again.
void sweep(self_ptr self) {
  auto& st = self->state;
  auto w = writer_of(self);
  if (w == nullptr)
    return;
  auto who = auto_retry_requester();
  int64_t due = 0, resolved = 0, still_failing = 0, gave_up = 0, errors = 0;
  auto count = [&](const char* outcome) {
    if (st.stats)
      st.stats->add_dlq_retries(outcome, 1);
  };
  try {
    auto ids = w->due_for_retry(st.cfg.policy, st.cfg.retry_batch);
    due = static_cast<int64_t>(ids.size());
    for (auto id : ids) {
      auto o = w->retry_journal(id, std::nullopt, who, &st.cfg.policy);
      switch (o.outcome) {
        case storage::dlq_outcome::ok:
          ++resolved;
          count("resolved");
          log::event(spdlog::level::info, "dlq", "dlq_auto_retry_resolved",
                     {{"dlq_id", id},
                      {"event_id", o.event_id},
                      {"topic", o.topic},
                      {"tenant", o.tenant_id},
                      {"attempts", o.attempts}});
          break;
        case storage::dlq_outcome::still_invalid:
          if (o.gave_up) {
            ++gave_up;
            count("gave_up");
            log::event(spdlog::level::warn, "dlq", "dlq_auto_retry_gave_up",
                       {{"dlq_id", id},
                        {"topic", o.topic},
                        {"attempts", o.attempts},
                        {"error_class", o.error_class},
                        {"error", o.error}});
          } else {
            ++still_failing;
            count("still_failing");
          }
          break;
        default:
          // Closed or gone meanwhile (an operator acted on it): nothing.
          break;
      }
    }
  } catch (const std::exception& e) {
    // storage::infra_error, or anything else the store threw: the actor
    // stays, the store reconnects on its next call.
    ++errors;
    count("error");
    log::event(spdlog::level::warn, "dlq", "dlq_auto_retry_failed",
               {{"reason", e.what()}});
  }
  log::event(spdlog::level::debug, "dlq", "dlq_auto_retry_sweep",
             {{"due", due},
              {"resolved", resolved},
              {"still_failing", still_failing},
              {"gave_up", gave_up},
              {"errors", errors}});
}

} // namespace

requester auto_retry_requester() {
  requester r;
  r.principal = "auto-retry";
  r.role = "admin";
  r.scope.all = true;
  r.scope.unknown_tenant = true;
  return r;
}

dlq_actor::behavior_type dlq(dlq_actor::stateful_pointer<dlq_state> self,
                             dlq_reader_factory make_reader,
                             dlq_writer_factory make_writer,
                             dlq_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.make_reader = std::move(make_reader);
  st.make_writer = std::move(make_writer);
  st.cfg = std::move(cfg);
  st.stats = stats;
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (st.producer && !st.in_flight.empty()) {
      // Give republishes in flight their delivery reports; the others keep
      // their rows `retried` (outcome unknown) and are answered now.
      if (msg.reason == caf::exit_reason::user_shutdown)
        st.producer->flush(static_cast<int>(st.cfg.flush_timeout.count()));
      for (auto& [token, p] : st.in_flight)
        p.promise.deliver(
          caf::make_error(errc::broker_unavailable, "shutting down"));
      st.in_flight.clear();
    }
    self->quit(msg.reason);
  });
  self->send(self, atom::internal_v, atom::refresh_v);
  if (st.make_writer && !st.cfg.policy.classes.empty()
      && st.cfg.retry_interval.count() > 0 && st.cfg.retry_batch > 0)
    self->delayed_send(self, st.cfg.retry_interval, atom::internal_v,
                       atom::retry_v);
  return {
    [=](atom::internal, atom::refresh) {
      auto& st = self->state;
      try {
        if (!st.reader)
          st.reader = st.make_reader();
        auto n = st.reader->pending_count();
        if (n > st.pending && st.pending >= 0)
          log::event(spdlog::level::warn, "dlq", "dlq_grew",
                     {{"pending", n}, {"previous", st.pending}});
        st.pending = n;
        if (st.stats)
          st.stats->set_dlq_pending(n);
      } catch (const storage::infra_error& e) {
        // Not fatal: the gauge keeps its last value until the next tick.
        st.reader.reset();
        log::event(spdlog::level::debug, "dlq", "refresh_failed",
                   {{"reason", e.what()}});
      }
      self->delayed_send(self, st.cfg.refresh_interval, atom::internal_v,
                         atom::refresh_v);
    },
    [=](atom::status) { return self->state.pending; },
    [=](atom::latest, int32_t limit, const tenant_scope& scope)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      return read_dlq(self,
                      [&](dlq_reader& r) { return r.latest(limit, scope); });
    },
    [=](atom::find, const dlq_filter& f, const tenant_scope& scope,
        int32_t limit, int64_t before_id)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      return read_dlq(self, [&](dlq_reader& r) {
        return r.find(f, scope, limit, before_id);
      });
    },
    [=](atom::get, int64_t id, const tenant_scope& scope)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      return read_dlq(self, [&](dlq_reader& r) { return r.get(id, scope); });
    },
    [=](atom::retry, const dlq_retry_request& rq,
        const requester& by) -> caf::result<dlq_retry_result> {
      auto who = by;
      if (who.principal.empty())
        who.principal = "anonymous";
      auto action = rq.mode == "republish" ? "republish" : "retry";
      try {
        if (rq.mode == "republish")
          return republish(self, rq.id, who);
        return retry_journal(self, rq, who);
      } catch (const storage::infra_error& e) {
        count_action(self, action, "failed");
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::discard, int64_t id, const std::string& reason,
        const requester& by)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      auto who = by;
      if (who.principal.empty())
        who.principal = "anonymous";
      try {
        auto w = writer_of(self);
        if (w == nullptr)
          return caf::make_error(errc::db_unavailable, "no DLQ store");
        auto outcome = storage::dlq_outcome::not_found;
        auto row = w->discard(id, reason, who, outcome);
        if (!row) {
          count_action(self, "discard", "refused");
          storage::dlq_retry_outcome o;
          o.outcome = outcome;
          return refusal(id, o);
        }
        count_action(self, "discard", "ok");
        log::event(spdlog::level::info, "dlq", "dlq_discarded",
                   {{"dlq_id", id},
                    {"topic", row->topic},
                    {"error_class", row->error_class},
                    {"principal", who.principal},
                    {"request_id", who.request_id}});
        return std::vector<storage::dlq_entry_row>{std::move(*row)};
      } catch (const storage::infra_error& e) {
        count_action(self, "discard", "failed");
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::purge, const std::string& status, const std::string& before,
        const requester& by) -> caf::result<int64_t> {
      auto who = by;
      if (who.principal.empty())
        who.principal = "anonymous";
      try {
        auto w = writer_of(self);
        if (w == nullptr)
          return caf::make_error(errc::db_unavailable, "no DLQ store");
        auto n = w->purge(status, before, who);
        count_action(self, "purge", "ok", static_cast<uint64_t>(n));
        log::event(spdlog::level::info, "dlq", "dlq_purged",
                   {{"status", status},
                    {"before", before},
                    {"deleted", n},
                    {"principal", who.principal},
                    {"request_id", who.request_id}});
        return n;
      } catch (const std::invalid_argument& e) {
        std::string why = e.what();
        return caf::make_error(errc::bad_request, why,
                               std::string{why.find("before")
                                               != std::string::npos
                                             ? "bad_time"
                                             : "bad_filter"});
      } catch (const storage::infra_error& e) {
        count_action(self, "purge", "failed");
        return caf::make_error(errc::db_unavailable, std::string{e.what()});
      }
    },
    [=](atom::internal, atom::retry) {
      sweep(self);
      self->delayed_send(self, self->state.cfg.retry_interval,
                         atom::internal_v, atom::retry_v);
    },
    [=](atom::internal, atom::poll) {
      auto& st = self->state;
      st.polling = false;
      if (!st.producer)
        return;
      st.producer->poll(0);
      check_fatal(self);
      schedule_poll(self);
    },
  };
}

dlq_reader_factory dlq_reader_on_journal(std::string database_url) {
  return [url = std::move(database_url)]() -> std::unique_ptr<dlq_reader> {
    return std::make_unique<store_reader>(url);
  };
}

dlq_writer_factory dlq_writer_on_store(std::string database_url,
                                       storage::dlq_store_options opts) {
  return [url = std::move(database_url),
          opts = std::move(opts)]() -> std::unique_ptr<dlq_writer> {
    return std::make_unique<store_writer>(url, opts);
  };
}

} // namespace ces
