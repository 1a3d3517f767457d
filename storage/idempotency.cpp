#include "storage/idempotency.hpp"

#include "storage/pg_util.hpp"

#include <algorithm>

namespace ces::storage {

struct idempotency_store::impl {
  idempotency_options opts;
  std::unique_ptr<detail::store_session> session;

  /// Runs `f(transaction)` in a transaction and commits; a libpqxx failure
  /// drops the connection and becomes an infra_error.
  template <class F>
  auto run(const char* what, F f) {
    return session->run(what, std::move(f));
  }

  int64_t ttl_h() const {
    return opts.ttl.count();
  }

  int64_t pending_s() const {
    return std::max<int64_t>(1, opts.pending_ttl.count());
  }
};

idempotency_store::idempotency_store(std::string database_url,
                                     idempotency_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->opts = opts;
  impl_->session = std::make_unique<detail::store_session>(
    std::move(database_url), "idempotency",
    std::vector<std::string>{"SET TimeZone = 'UTC'"},
    opts.statement_timeout_ms);
}

idempotency_store::~idempotency_store() = default;

bool idempotency_store::connected() const {
  return impl_->session->connected();
}

idempotency_claim idempotency_store::claim(const std::string& principal,
                                           const std::string& key,
                                           const std::string& fingerprint) {
  // The first claim inserts; a claim that meets a row takes it over only
  // when that row is a pending claim that expired or an answer older than
  // the ttl. INSERT .. ON CONFLICT waits for a concurrent inserter's commit
  // and then sees its row: two claims never both win.
  return impl_->run("cannot claim an idempotency key", [&](pqxx::work& tx) {
    for (int attempt = 0;; ++attempt) {
      auto won = tx.exec_params(
        "INSERT INTO idempotency_keys AS k"
        "  (principal, key, fingerprint, pending_until)"
        " VALUES ($1, $2, $3, now() + $4 * interval '1 second')"
        " ON CONFLICT (principal, key) DO UPDATE"
        "  SET fingerprint = EXCLUDED.fingerprint, state = 'pending',"
        "      status = NULL, body = NULL, headers = '[]',"
        "      created_at = now(), pending_until = EXCLUDED.pending_until"
        "  WHERE (k.state = 'pending' AND k.pending_until <= now())"
        "     OR k.created_at < now() - $5 * interval '1 hour'"
        " RETURNING 1",
        principal, key, fingerprint, impl_->pending_s(), impl_->ttl_h());
      idempotency_claim out;
      if (!won.empty()) {
        out.state = "new";
        return out;
      }
      auto row = tx.exec_params(
        "SELECT fingerprint, state, coalesce(status, 0), coalesce(body, ''),"
        "  least(5, greatest(1, ceil(extract(epoch FROM"
        "    pending_until - now()))))::bigint"
        " FROM idempotency_keys WHERE principal = $1 AND key = $2",
        principal, key);
      if (row.empty()) {
        // Released between the two statements: claim again.
        if (attempt < 3)
          continue;
        throw pqxx::failure{"idempotency key claim did not settle"};
      }
      auto& r = row[0];
      if (r[0].as<std::string>() != fingerprint) {
        out.state = "mismatch";
        return out;
      }
      if (r[1].as<std::string>() == "pending") {
        out.state = "pending";
        out.retry_after_s = r[4].is_null() ? 1 : r[4].as<int64_t>();
        return out;
      }
      out.state = "done";
      out.status = r[2].as<int32_t>();
      out.body = r[3].as<std::string>();
      auto hs = tx.exec_params(
        "SELECT h->>0, h->>1 FROM idempotency_keys,"
        "  jsonb_array_elements(headers) WITH ORDINALITY AS x(h, n)"
        " WHERE principal = $1 AND key = $2 ORDER BY n",
        principal, key);
      for (auto h : hs)
        out.headers.emplace_back(h[0].as<std::string>(),
                                 h[1].as<std::string>());
      return out;
    }
  });
}

bool idempotency_store::complete(
  const std::string& principal, const std::string& key, int32_t status,
  const std::string& body,
  const std::vector<std::pair<std::string, std::string>>& headers) {
  std::vector<std::string> names;
  std::vector<std::string> values;
  for (auto& [n, v] : headers) {
    names.push_back(n);
    values.push_back(v);
  }
  return impl_->run("cannot store an idempotent answer", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
      "UPDATE idempotency_keys SET state = 'done', status = $3, body = $4,"
      "  headers = (SELECT coalesce(jsonb_agg(jsonb_build_array(n, v)"
      "                                       ORDER BY i), '[]')"
      "             FROM unnest($5::text[], $6::text[])"
      "                  WITH ORDINALITY AS h(n, v, i)),"
      "  pending_until = NULL"
      " WHERE principal = $1 AND key = $2 AND state = 'pending'",
      principal, key, status, body, detail::text_array(names),
      detail::text_array(values));
    return r.affected_rows() == 1;
  });
}

bool idempotency_store::release(const std::string& principal,
                                const std::string& key) {
  return impl_->run("cannot release an idempotency key", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
      "DELETE FROM idempotency_keys"
      " WHERE principal = $1 AND key = $2 AND state = 'pending'",
      principal, key);
    return r.affected_rows() == 1;
  });
}

int64_t idempotency_store::purge() {
  return impl_->run("cannot purge idempotency keys", [&](pqxx::work& tx) {
    auto r = tx.exec_params(
      "DELETE FROM idempotency_keys"
      " WHERE created_at < now() - $1 * interval '1 hour'",
      impl_->ttl_h());
    return static_cast<int64_t>(r.affected_rows());
  });
}

} // namespace ces::storage
