#include "actors/consumer.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"

namespace ces {

namespace {

using self_ptr = consumer_actor::stateful_pointer<consumer_state>;
using clock_type = std::chrono::steady_clock;

void schedule_poll(self_ptr self) {
  auto& st = self->state;
  if (st.poll_pending || st.stopping || st.broken)
    return;
  st.poll_pending = true;
  self->send(self, atom::poll_v);
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
  log::event(spdlog::level::info, "consumer", "stopped",
             {{"batches_in_flight", static_cast<int64_t>(st.in_flight)}});
  self->quit(caf::exit_reason::user_shutdown);
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

void on_ack(self_ptr self, persist_outcome& out) {
  auto& st = self->state;
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
  if (st.paused && st.in_flight < st.cfg.max_in_flight) {
    st.source->resume_all();
    st.paused = false;
  }
  schedule_poll(self);
}

void send_batch(self_ptr self) {
  auto& st = self->state;
  batch b;
  b.seq = st.next_seq++;
  b.records = std::move(st.building);
  st.building.clear();
  st.building.reserve(st.cfg.batch_max_records);
  count_by_topic(b.records, st.stats);
  ++st.in_flight;
  if (st.stats)
    st.stats->set_in_flight_batches(static_cast<int64_t>(st.in_flight));
  self->request(st.persister, caf::infinite, atom::persist_v, std::move(b))
    .then([=](persist_outcome& out) { on_ack(self, out); },
          [=](caf::error& err) {
            auto& st = self->state;
            --st.in_flight;
            st.broken = true;
            log::event(spdlog::level::err, "consumer", "persist_failed",
                       {{"reason", self->system().render(err)},
                        {"action", "waiting for the supervisor"}});
            if (st.stopping && st.in_flight == 0)
              self->quit(caf::exit_reason::user_shutdown);
          });
}

void poll(self_ptr self) {
  auto& st = self->state;
  st.poll_pending = false;
  if (st.stopping || st.broken)
    return;
  if (st.in_flight >= st.cfg.max_in_flight) {
    // Backpressure: nothing more is fetched until an acknowledgement.
    if (!st.paused) {
      st.source->pause_all();
      st.paused = true;
      self->delayed_send(self, st.cfg.keepalive, atom::keepalive_v);
    }
    return;
  }
  auto linger_over = [&](clock_type::time_point now) {
    return !st.building.empty() && now - st.batch_started >= st.cfg.linger;
  };
  while (st.building.size() < st.cfg.batch_max_records) {
    auto now = clock_type::now();
    if (linger_over(now))
      break;
    auto wait = st.cfg.idle_wait;
    if (!st.building.empty())
      wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        st.batch_started + st.cfg.linger - now);
    kafka_record rec;
    if (!st.source->next(rec, wait))
      break;
    if (st.building.empty())
      st.batch_started = clock_type::now();
    st.building.emplace_back(check_record(std::move(rec), st.cfg.limits));
  }
  if (st.building.size() >= st.cfg.batch_max_records
      || linger_over(clock_type::now()))
    send_batch(self);
  schedule_poll(self);
}

} // namespace

consumer_actor::behavior_type
consumer(consumer_actor::stateful_pointer<consumer_state> self,
         source_factory make_source, persister_actor persister,
         consumer_settings cfg, metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.persister = std::move(persister);
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
  return {
    [=](atom::poll) { poll(self); },
    [=](atom::keepalive) {
      auto& st = self->state;
      if (!st.paused || st.stopping || st.broken)
        return;
      st.source->serve();
      self->delayed_send(self, st.cfg.keepalive, atom::keepalive_v);
    },
  };
}

} // namespace ces
