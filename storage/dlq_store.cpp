#include "storage/dlq_store.hpp"

#include "storage/pg_util.hpp"

namespace ces::storage {

struct dlq_store::impl {
  std::string url;
  std::unique_ptr<detail::pg_session> db;

  /// Runs `f(transaction)` on a live connection; any libpqxx failure drops
  /// the connection and becomes an infra_error.
  template <class F>
  auto run(const char* what, F f) {
    if (db == nullptr || !db->conn->is_open()) {
      db.reset();
      db = detail::connect(url);
    }
    try {
      pqxx::read_transaction tx{*db->conn, "dlq_store"};
      return f(tx);
    } catch (const pqxx::failure& e) {
      db.reset();
      throw detail::to_infra_error(e, what);
    }
  }
};

dlq_store::dlq_store(const std::string& database_url)
  : impl_(std::make_unique<impl>()) {
  impl_->url = database_url;
  impl_->db = detail::connect(database_url);
}

dlq_store::~dlq_store() = default;

int64_t dlq_store::pending_count() {
  return impl_->run("dlq pending_count", [](pqxx::transaction_base& tx) {
    return tx.exec1("SELECT count(*) FROM event_dlq WHERE status = 'pending'")[0]
      .as<int64_t>();
  });
}

bool dlq_store::connected() const {
  return impl_->db != nullptr && impl_->db->conn->is_open();
}

} // namespace ces::storage
