// The MAINTENANCE actor's production backend, in a file of its own: the
// actor tests link the actor (maintenance.cpp) with a fake backend, without
// the PostgreSQL stores.
#include "actors/maintenance.hpp"

#include "storage/retention.hpp"

#include <memory>

namespace ces {

maintenance_backend maintenance_backend_on_store(std::string database_url) {
  auto parts = std::make_shared<storage::journal_partitions>(database_url);
  auto retention
    = std::make_shared<storage::retention_store>(std::move(database_url));
  maintenance_backend be;
  be.ensure_ahead = [parts](const std::string& interval, int ahead) {
    return parts->ensure_ahead(interval, ahead);
  };
  be.drop_expired = [parts](int days) { return parts->drop_expired(days); };
  be.list = [parts] { return parts->list(); };
  be.purge_dlq = [retention](int days, int batch) {
    return retention->purge_dlq(days, batch);
  };
  be.purge_audit = [retention](int days, int batch) {
    return retention->purge_audit(days, batch);
  };
  return be;
}

} // namespace ces
