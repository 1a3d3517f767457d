#include "actors/persister.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "storage/backoff.hpp"
#include "storage/journal.hpp"

namespace ces {

namespace {

using self_ptr = persister_actor::stateful_pointer<persister_state>;

uint64_t total(const std::vector<topic_count>& xs) {
  uint64_t n = 0;
  for (auto& x : xs)
    n += x.count;
  return n;
}

/// crm_event_lag_seconds: the clock at commit minus each row's Kafka
/// timestamp (received_at is the transaction's start, a few ms earlier).
void observe_event_lag(metrics& m, const std::vector<int64_t>& stamps_ms) {
  if (stamps_ms.empty())
    return;
  auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  std::vector<double> ages;
  ages.reserve(stamps_ms.size());
  for (auto ts : stamps_ms)
    ages.push_back(static_cast<double>(now_ms - ts) / 1000.0);
  m.observe_event_lag(ages);
}

/// Writes queued batches in order until the queue is empty or an
/// infrastructure error schedules a retry.
void drain(self_ptr self) {
  auto& st = self->state;
  while (!st.queue.empty() && !st.retry_scheduled) {
    auto& head = st.queue.front();
    auto started = std::chrono::steady_clock::now();
    try {
      if (!st.writer)
        st.writer = st.make_writer();
      auto out = st.writer->write(head.job);
      std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - started;
      // Counted here, right after the commit, so that the metrics never
      // lag behind what a reader of the journal sees.
      if (auto m = st.stats) {
        m->observe_batch_persist(took.count(), head.job.records.size());
        m->set_db_up(true);
        for (auto& c : out.journalled)
          m->add_persisted(c.topic, c.count);
        for (auto& c : out.dead_lettered)
          m->add_dlq(c.topic, c.reason, c.count);
        for (auto& c : out.skipped)
          m->add_skipped(c.topic, c.count);
        for (auto& c : out.replay_duplicates)
          m->add_replay_duplicates(c.topic, c.count);
        observe_event_lag(*m, out.journalled_timestamps_ms);
      }
      std::vector<int64_t>{}.swap(out.journalled_timestamps_ms);
      if (st.failures > 0)
        log::event(spdlog::level::info, st.cfg.name, "db_recovered",
                   {{"failed_attempts", static_cast<int64_t>(st.failures)}});
      st.failures = 0;
      if (auto dlq = total(out.dead_lettered); dlq > 0)
        log::event(spdlog::level::warn, st.cfg.name, "dead_lettered",
                   {{"batch", static_cast<int64_t>(head.job.seq)},
                    {"records", static_cast<int64_t>(dlq)},
                    {"isolation_rounds",
                     static_cast<int64_t>(out.isolation_rounds)}});
      if (auto dup = total(out.replay_duplicates); dup > 0)
        log::event(spdlog::level::info, st.cfg.name, "replay_duplicates",
                   {{"batch", static_cast<int64_t>(head.job.seq)},
                    {"records", static_cast<int64_t>(dup)}});
      head.promise.deliver(std::move(out));
      st.queue.pop_front();
    } catch (const storage::infra_error& e) {
      st.writer.reset();
      ++st.failures;
      if (st.stats)
        st.stats->set_db_up(false);
      auto delay
        = capped_backoff(st.cfg.retry_initial, st.cfg.retry_max, st.failures);
      log::event(spdlog::level::warn, st.cfg.name, "db_retry",
                 {{"reason", e.what()},
                  {"attempt", static_cast<int64_t>(st.failures)},
                  {"backoff_ms", static_cast<int64_t>(delay.count())},
                  {"batch", static_cast<int64_t>(head.job.seq)},
                  {"queued_batches", static_cast<int64_t>(st.queue.size())}});
      st.retry_scheduled = true;
      self->delayed_send(self, delay, atom::internal_v, atom::retry_v);
    }
  }
}

class journal_batch_writer : public batch_writer {
public:
  journal_batch_writer(std::string url, bool keep_raw,
                       std::string partition_interval)
    : url_(std::move(url)), keep_raw_(keep_raw),
      interval_(std::move(partition_interval)) {
  }
  persist_outcome write(const batch& job) override {
    // A consumer reads one cluster for its life: the writer (and its
    // connection) is made again only if a batch names another cluster.
    if (!writer_ || cluster_ != job.cluster_id) {
      writer_.reset();
      writer_ = std::make_unique<storage::journal_writer>(
        url_, job.cluster_id, keep_raw_, interval_);
      cluster_ = job.cluster_id;
    }
    return writer_->write(job.records);
  }

private:
  std::string url_;
  std::string cluster_;
  bool keep_raw_ = true;
  std::string interval_; // journal-partition-interval
  std::unique_ptr<storage::journal_writer> writer_;
};

} // namespace

persister_actor::behavior_type
persister(persister_actor::stateful_pointer<persister_state> self,
          writer_factory make_writer, persister_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.make_writer = std::move(make_writer);
  st.cfg = cfg;
  st.stats = stats;
  return {
    [=](atom::persist, batch& job) -> caf::result<persist_outcome> {
      auto& st = self->state;
      auto promise = self->make_response_promise<persist_outcome>();
      st.queue.push_back(persister_state::pending{std::move(job), promise});
      drain(self);
      return promise;
    },
    [=](atom::internal, atom::retry) {
      self->state.retry_scheduled = false;
      drain(self);
    },
  };
}

writer_factory journal_writer_factory(std::string database_url,
                                      bool keep_raw,
                                      std::string partition_interval) {
  return [=]() -> std::unique_ptr<batch_writer> {
    return std::make_unique<journal_batch_writer>(database_url, keep_raw,
                                                  partition_interval);
  };
}

} // namespace ces
