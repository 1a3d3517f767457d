#include "actors/dlq.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "storage/dlq_store.hpp"
#include "storage/journal.hpp"

namespace ces {

namespace {

class store_reader : public dlq_reader {
public:
  explicit store_reader(const std::string& url) : store_(url) {
  }
  int64_t pending_count() override {
    return store_.pending_count();
  }

private:
  storage::dlq_store store_;
};

} // namespace

dlq_actor::behavior_type dlq(dlq_actor::stateful_pointer<dlq_state> self,
                             dlq_reader_factory make_reader,
                             std::chrono::milliseconds refresh_interval,
                             metrics* stats) {
  self->set_exception_handler(exception_to_error);
  auto& st = self->state;
  st.make_reader = std::move(make_reader);
  st.refresh_interval = refresh_interval;
  st.stats = stats;
  self->send(self, atom::refresh_v);
  return {
    [=](atom::refresh) {
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
      self->delayed_send(self, st.refresh_interval, atom::refresh_v);
    },
    [=](atom::status) { return self->state.pending; },
  };
}

dlq_reader_factory dlq_store_factory(std::string database_url) {
  return [url = std::move(database_url)]() -> std::unique_ptr<dlq_reader> {
    return std::make_unique<store_reader>(url);
  };
}

} // namespace ces
