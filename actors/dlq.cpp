#include "actors/dlq.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "storage/journal_reader.hpp"

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
  self->send(self, atom::internal_v, atom::refresh_v);
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
      self->delayed_send(self, st.refresh_interval, atom::internal_v,
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
    // Groundwork of issue 11: the handlers below are implemented by the
    // dlq-actor branch.
    [=](atom::retry, const dlq_retry_request&,
        const requester&) -> caf::result<dlq_retry_result> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [=](atom::discard, int64_t, const std::string&, const requester&)
      -> caf::result<std::vector<storage::dlq_entry_row>> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [=](atom::purge, const std::string&, const std::string&,
        const requester&) -> caf::result<int64_t> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [=](atom::internal, atom::retry) {},
    [=](atom::internal, atom::poll) {},
  };
}

dlq_reader_factory dlq_reader_on_journal(std::string database_url) {
  return [url = std::move(database_url)]() -> std::unique_ptr<dlq_reader> {
    return std::make_unique<store_reader>(url);
  };
}

} // namespace ces
