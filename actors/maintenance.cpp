#include "actors/maintenance.hpp"

#include "actors/errc.hpp"
#include "api/metrics.hpp"
#include "config/logging.hpp"

#include <exception>

namespace ces {

namespace {

using self_ptr = maintenance_actor::stateful_pointer<maintenance_state>;

/// What one round did.
struct round_outcome {
  int64_t changes = 0; // partitions created + dropped + rows deleted
  /// "step: error" of the first step that failed; empty: none failed.
  std::string failure;
};

/// Runs `f`; a failure is logged (maintenance_failed) and remembered in
/// `out`. True when `f` returned.
template <class F>
bool step(round_outcome& out, const char* name, F f) {
  std::string error;
  try {
    f();
    return true;
  } catch (const std::exception& e) {
    error = e.what();
  } catch (...) {
    error = "unknown error";
  }
  // storage/ errors carry PostgreSQL's message (never the database URL).
  log::event(spdlog::level::err, "maintenance", "maintenance_failed",
             {{"step", name}, {"error", error}});
  if (out.failure.empty())
    out.failure = std::string{name} + ": " + error;
  return false;
}

/// The end of the newest attached partition's range ("" when none).
std::string
attached_through(const std::vector<storage::journal_partition>& ps) {
  std::string through;
  for (auto& p : ps)
    if (p.state == "attached" && p.range_to > through)
      through = p.range_to;
  return through;
}

round_outcome run_round(self_ptr self, const maintenance_settings& cfg) {
  auto& st = self->state;
  auto& be = st.backend;
  round_outcome out;
  step(out, "ensure_ahead", [&] {
    auto created = be.ensure_ahead(cfg.partition_interval,
                                   cfg.partitions_ahead);
    out.changes += created;
    if (created > 0)
      log::event(spdlog::level::info, "maintenance", "partitions_created",
                 {{"count", static_cast<int64_t>(created)},
                  {"through", attached_through(be.list())}});
  });
  if (cfg.journal_retention_days > 0)
    step(out, "drop_expired", [&] {
      for (auto& p : be.drop_expired(cfg.journal_retention_days)) {
        auto rows = p.row_count.value_or(0);
        ++out.changes;
        out.changes += rows;
        if (st.stats != nullptr)
          st.stats->add_retention_deleted("event_journal",
                                          static_cast<uint64_t>(rows));
        log::event(spdlog::level::info, "maintenance", "partition_dropped",
                   {{"name", p.name},
                    {"range", p.range_from + ".." + p.range_to},
                    {"min_id", p.min_id.value_or(-1)},
                    {"max_id", p.max_id.value_or(-1)},
                    {"rows", rows}});
      }
    });
  if (cfg.dlq_retention_days > 0)
    step(out, "purge_dlq", [&] {
      auto n = be.purge_dlq(cfg.dlq_retention_days, cfg.batch);
      out.changes += n;
      if (n > 0) {
        if (st.stats != nullptr)
          st.stats->add_retention_deleted("event_dlq",
                                          static_cast<uint64_t>(n));
        log::event(spdlog::level::info, "maintenance", "dlq_retention_purged",
                   {{"deleted", n}, {"days", cfg.dlq_retention_days}});
      }
    });
  if (cfg.audit_retention_days > 0)
    step(out, "purge_audit", [&] {
      auto n = be.purge_audit(cfg.audit_retention_days, cfg.batch);
      out.changes += n;
      if (n > 0) {
        if (st.stats != nullptr)
          st.stats->add_retention_deleted("audit_log",
                                          static_cast<uint64_t>(n));
        log::event(spdlog::level::info, "maintenance", "audit_purged",
                   {{"deleted", n}, {"days", cfg.audit_retention_days}});
      }
    });
  step(out, "list", [&] {
    int64_t attached = 0;
    for (auto& p : be.list())
      if (p.state == "attached")
        ++attached;
    if (st.stats != nullptr)
      st.stats->set_journal_partitions(attached);
  });
  if (st.stats != nullptr)
    st.stats->add_maintenance_run(out.failure.empty() ? "ok" : "failed");
  return out;
}

} // namespace

maintenance_actor::behavior_type
maintenance(maintenance_actor::stateful_pointer<maintenance_state> self,
            maintenance_settings cfg, maintenance_backend backend,
            metrics* stats) {
  self->state.backend = std::move(backend);
  self->state.stats = stats;
  self->send(self, atom::internal_v, atom::refresh_v);
  return {
    [=](atom::internal, atom::refresh) {
      run_round(self, cfg);
      self->delayed_send(self, cfg.interval, atom::internal_v,
                         atom::refresh_v);
    },
    [=](atom::run) -> caf::result<int64_t> {
      auto out = run_round(self, cfg);
      if (!out.failure.empty())
        return caf::make_error(errc::db_unavailable,
                               "maintenance round failed: " + out.failure);
      return out.changes;
    },
  };
}

} // namespace ces
