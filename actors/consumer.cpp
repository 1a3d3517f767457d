#include "actors/consumer.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"

#include <stdexcept>

namespace ces {

namespace {

using self_ptr = consumer_actor::stateful_pointer<consumer_state>;
using clock_type = std::chrono::steady_clock;

void schedule_poll(self_ptr self) {
  auto& st = self->state;
  if (st.poll_pending || st.stopping || st.broken)
    return;
  st.poll_pending = true;
  self->send(self, atom::internal_v, atom::poll_v);
}

std::vector<partition_offset> acked_offsets(const consumer_state& st) {
  std::vector<partition_offset> result;
  for (auto& [tp, next] : st.acked)
    result.push_back(partition_offset{tp.first, tp.second, next});
  return result;
}

void finish(self_ptr self) {
  auto& st = self->state;
  try {
    st.source->close(acked_offsets(st));
  } catch (const std::exception& e) {
    log::event(spdlog::level::warn, "consumer", "close_failed",
               {{"reason", e.what()}});
  }
  st.finished = true;
  if (st.stats) // no partition is assigned any more
    st.stats->set_consumer_lag({});
  log::event(spdlog::level::info, "consumer", "stopped",
             {{"batches_in_flight", static_cast<int64_t>(st.in_flight)}});
  self->quit(caf::exit_reason::user_shutdown);
}

/// The lag of every assigned partition whose high watermark is known: the
/// watermark minus the journal's position, which is the acknowledged next
/// offset or, before any acknowledgement of this assignment, the offset
/// consumption started from (whichever is further: a partition assigned
/// again starts from the journal's stored offset, past an older ack).
std::vector<metrics::partition_lag>
consumer_lags(const std::vector<partition_position>& positions,
              const std::map<std::pair<std::string, int32_t>, int64_t>& acked) {
  std::vector<metrics::partition_lag> result;
  for (auto& p : positions) {
    auto pos = p.start;
    auto i = acked.find({p.topic, p.partition});
    if (i != acked.end())
      pos = std::max(pos, i->second);
    if (p.high_watermark < 0 || pos < 0)
      continue; // not fetched yet, or no known position
    result.push_back(metrics::partition_lag{
      p.topic, p.partition, std::max<int64_t>(0, p.high_watermark - pos)});
  }
  return result;
}

void publish_lag(self_ptr self) {
  auto& st = self->state;
  if (st.stats == nullptr || st.finished)
    return;
  st.stats->set_consumer_lag(consumer_lags(st.source->positions(), st.acked));
}

/// Reports the offsets the broker deleted before they were read (the source
/// found them among the records it handed out): one offsets_lost line and
/// crm_kafka_offsets_lost_total per gap. Consumption goes on after them.
void report_gaps(self_ptr self) {
  auto& st = self->state;
  for (auto& g : st.source->take_gaps()) {
    log::event(spdlog::level::err, "consumer", "offsets_lost",
               {{"topic", g.topic},
                {"partition", static_cast<int64_t>(g.partition)},
                {"first", g.first},
                {"last", g.last},
                {"count", g.count()},
                {"reason", "deleted by the broker before they were read"}});
    if (st.stats)
      st.stats->add_offsets_lost(g.topic, g.partition,
                                 static_cast<uint64_t>(g.count()));
  }
}

void count_by_topic(const std::vector<checked_record>& records, metrics* m) {
  if (m == nullptr)
    return;
  std::map<std::string, uint64_t> counts;
  for (auto& r : records)
    ++counts[r.rec.topic];
  for (auto& [topic, n] : counts)
    m->add_ingested(topic, n);
}

bool at_bound(const consumer_state& st) {
  for (auto n : st.in_flight_per)
    if (n >= st.cfg.max_in_flight)
      return true;
  return false;
}

void on_ack(self_ptr self, size_t target, persist_outcome& out) {
  auto& st = self->state;
  if (st.gone[target])
    return; // counted lost with its PERSISTER (cannot happen: FIFO)
  --st.in_flight_per[target];
  --st.in_flight;
  if (auto m = st.stats)
    m->set_in_flight_batches(static_cast<int64_t>(st.in_flight));
  for (auto& o : out.offsets)
    st.acked[{o.topic, o.partition}] = o.next_offset;
  if (!st.broken && !st.stopping)
    st.source->commit(out.offsets);
  if (st.stopping) {
    if (st.in_flight == 0)
      finish(self);
    return;
  }
  if (!at_bound(st)) {
    st.stalled_since.reset();
    if (st.paused) {
      st.source->resume_all();
      st.paused = false;
    }
  }
  schedule_poll(self);
}

/// Splits the open batch by persister and sends each part.
void send_batch(self_ptr self) {
  auto& st = self->state;
  auto n = st.persisters.size();
  count_by_topic(st.building, st.stats);
  std::vector<batch> parts(n);
  // Known since the assignment, so before the first record.
  auto cluster = st.source->cluster_id();
  if (cluster.empty())
    throw std::runtime_error("no Kafka cluster id: cannot fence the batch");
  for (auto& p : parts)
    p.cluster_id = cluster;
  if (n == 1) {
    parts[0].records = std::move(st.building);
  } else {
    for (auto& p : parts)
      p.records.reserve(st.building.size() / n + st.building.size() / 8);
    for (auto& r : st.building)
      parts[persister_for(r.rec.topic, r.rec.partition, n)].records.push_back(
        std::move(r));
  }
  st.building.clear();
  st.building.reserve(st.cfg.batch_max_records);
  for (size_t i = 0; i < n; ++i) {
    if (parts[i].records.empty())
      continue;
    parts[i].seq = st.next_seq++;
    ++st.in_flight_per[i];
    ++st.in_flight;
    self
      ->request(st.persisters[i], caf::infinite, atom::persist_v,
                std::move(parts[i]))
      .then([=](persist_outcome& out) { on_ack(self, i, out); },
            [=](caf::error& err) {
              auto& st = self->state;
              if (!st.gone[i]) { // else counted lost with its PERSISTER
                --st.in_flight_per[i];
                --st.in_flight;
              }
              st.broken = true;
              log::event(spdlog::level::err, "consumer", "persist_failed",
                         {{"reason", self->system().render(err)},
                          {"action", "waiting for the supervisor"}});
              if (st.stopping && st.in_flight == 0)
                finish(self);
            });
  }
  if (st.stats)
    st.stats->set_in_flight_batches(static_cast<int64_t>(st.in_flight));
}

/// PERSISTER `i` ended. It never answers the batches it held (CAF 0.17
/// sends no error for a dropped response promise): they are lost, never
/// committed (Kafka redelivers them). Stop polling and committing, like after
/// a failed batch; a stopping CONSUMER stops once nothing else is in flight,
/// a running one waits for the SUPERVISOR, which restarts it with the
/// PERSISTER (rest-for-one).
void persister_down(self_ptr self, size_t i, const caf::error& reason) {
  auto& st = self->state;
  if (st.gone[i])
    return;
  st.gone[i] = true;
  auto lost = st.in_flight_per[i];
  st.in_flight -= lost;
  st.in_flight_per[i] = 0;
  st.broken = true;
  if (st.stats)
    st.stats->set_in_flight_batches(static_cast<int64_t>(st.in_flight));
  log::event(lost > 0 ? spdlog::level::err : spdlog::level::warn, "consumer",
             "persister_down",
             {{"persister", static_cast<int64_t>(i)},
              {"reason", self->system().render(reason)},
              {"batches_lost", static_cast<int64_t>(lost)},
              {"action", st.stopping ? "stopping"
                                     : "waiting for the supervisor"}});
  if (st.stopping && st.in_flight == 0)
    finish(self);
}

void schedule_keepalive(self_ptr self) {
  auto& st = self->state;
  if (st.keepalive_pending)
    return;
  st.keepalive_pending = true;
  self->delayed_send(self, st.cfg.keepalive, atom::internal_v,
                     atom::keepalive_v);
}

void poll(self_ptr self) {
  auto& st = self->state;
  st.poll_pending = false;
  if (st.stopping || st.broken)
    return;
  if (at_bound(st)) {
    // Backpressure: no consume() until an acknowledgement (the next poll is
    // scheduled by on_ack).
    if (!st.stalled_since)
      st.stalled_since = self->clock().now();
    schedule_keepalive(self);
    return;
  }
  // Batches close at batch_max_records or after the linger; but while no
  // batch is in flight the persisters are idle, and waiting only adds
  // latency: then a batch closes as soon as no more records are ready. Under
  // load batches are in flight, and the linger lets them grow.
  const bool idle = st.in_flight == 0;
  auto linger_over = [&](clock_type::time_point now) {
    return !st.building.empty() && now - st.batch_started >= st.cfg.linger;
  };
  // The clock is read once per 64 records (it cost ~5% of the sink's CPU
  // read per record): the linger may be overshot by that many records.
  auto now = clock_type::now();
  size_t unchecked = 0;
  while (st.building.size() < st.cfg.batch_max_records) {
    if (st.building.empty() || ++unchecked >= 64) {
      now = clock_type::now();
      unchecked = 0;
    }
    if (linger_over(now))
      break;
    auto wait = st.cfg.idle_wait;
    if (!st.building.empty())
      wait = idle ? std::chrono::milliseconds{0}
                  : std::max(std::chrono::milliseconds{0},
                             std::chrono::duration_cast<
                               std::chrono::milliseconds>(
                               st.batch_started + st.cfg.linger - now));
    kafka_record rec;
    if (!st.source->next(rec, wait))
      break;
    if (st.building.empty())
      st.batch_started = now = clock_type::now();
    st.building.emplace_back(check_record(std::move(rec), st.cfg.limits));
  }
  report_gaps(self);
  if (st.building.size() >= st.cfg.batch_max_records
      || linger_over(clock_type::now()) || (idle && !st.building.empty()))
    send_batch(self);
  schedule_poll(self);
}

} // namespace

size_t persister_for(const std::string& topic, int32_t partition, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : topic)
    h = (h ^ c) * 1099511628211ull;
  h = (h ^ static_cast<uint32_t>(partition)) * 1099511628211ull;
  return static_cast<size_t>(h % n);
}

consumer_actor::behavior_type
consumer(consumer_actor::stateful_pointer<consumer_state> self,
         source_factory make_source, std::vector<persister_actor> persisters,
         consumer_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  if (persisters.empty())
    throw std::invalid_argument("consumer: no persister");
  st.persisters = std::move(persisters);
  st.in_flight_per.assign(st.persisters.size(), 0);
  st.gone.assign(st.persisters.size(), false);
  // A dead PERSISTER never answers: learn of its end from a DOWN.
  for (auto& p : st.persisters)
    self->monitor(p);
  self->set_down_handler([=](caf::down_msg& dm) {
    auto& st = self->state;
    for (size_t i = 0; i < st.persisters.size(); ++i)
      if (st.persisters[i].address() == dm.source)
        persister_down(self, i, dm.reason);
  });
  st.cfg = cfg;
  st.stats = stats;
  st.building.reserve(cfg.batch_max_records);
  st.source = make_source(); // throws on bad configuration: a failed start
  self->set_exit_handler([=](caf::exit_msg& msg) {
    auto& st = self->state;
    if (msg.reason != caf::exit_reason::user_shutdown) {
      self->quit(msg.reason);
      return;
    }
    if (st.stopping)
      return;
    // Graceful stop: no more polling; records already taken from Kafka go
    // out as a last batch; quit once every batch is acknowledged.
    st.stopping = true;
    if (!st.building.empty() && !st.broken)
      send_batch(self);
    log::event(spdlog::level::info, "consumer", "stopping",
               {{"batches_in_flight", static_cast<int64_t>(st.in_flight)}});
    if (st.in_flight == 0 || st.broken)
      finish(self);
  });
  schedule_poll(self);
  if (stats != nullptr)
    self->delayed_send(self, cfg.lag_interval, atom::internal_v,
                       atom::refresh_v);
  return {
    [=](atom::internal, atom::poll) { poll(self); },
    [=](atom::internal, atom::refresh) {
      publish_lag(self);
      if (!self->state.finished)
        self->delayed_send(self, self->state.cfg.lag_interval,
                           atom::internal_v, atom::refresh_v);
    },
    [=](atom::internal, atom::keepalive) {
      auto& st = self->state;
      st.keepalive_pending = false;
      if (!st.stalled_since || st.stopping || st.broken)
        return;
      // A long stall (PostgreSQL down): pause the partitions and serve the
      // group's callbacks, or the group would evict this member after
      // max.poll.interval.ms without a consume().
      if (!st.paused
          && self->clock().now() - *st.stalled_since >= st.cfg.pause_after) {
        st.source->pause_all();
        st.paused = true;
        log::event(spdlog::level::info, "consumer", "paused",
                   {{"batches_in_flight", static_cast<int64_t>(st.in_flight)}});
      }
      if (st.paused) {
        st.source->serve();
        report_gaps(self);
      }
      schedule_keepalive(self);
    },
  };
}

} // namespace ces
