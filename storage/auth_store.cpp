#include "storage/auth_store.hpp"

#include "storage/audit_write.hpp"
#include "storage/pg_util.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cctype>

namespace ces::storage {

namespace {

// RFC 3339 in UTC with microseconds, produced by the server (as in
// journal_reader.cpp); NULL stays NULL.
#define CES_RFC3339(col)                                                       \
  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

const char* const key_columns =
  "id, name, role, all_tenants, tenants, " CES_RFC3339("created_at")
  ", created_by, " CES_RFC3339("expires_at") ", " CES_RFC3339("revoked_at")
  ", " CES_RFC3339("last_used_at");

const char* const audit_columns =
  "id, " CES_RFC3339("at") ", request_id, principal, role, tenants, action,"
  " target, parameters::text, outcome, status, counts::text, client_addr";

// The audit parameters of a key row (aliased k): role, tenants, expires_at.
const char* const key_parameters =
  "jsonb_build_object('role', k.role, 'tenants', CASE WHEN k.all_tenants"
  " THEN to_jsonb('*'::text) ELSE to_jsonb(k.tenants) END, 'expires_at', "
  CES_RFC3339("k.expires_at") ")";

#undef CES_RFC3339

const char* const active =
  "revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())";

api_key_row to_key(const pqxx::row& r) {
  api_key_row k;
  k.id = r[0].as<int64_t>();
  k.name = r[1].as<std::string>();
  k.role = r[2].as<std::string>();
  k.all_tenants = r[3].as<bool>();
  k.tenants = detail::text_array_elements(r[4]);
  k.created_at = detail::opt_text(r[5]);
  k.created_by = detail::opt_text(r[6]);
  k.expires_at = detail::opt_text(r[7]);
  k.revoked_at = detail::opt_text(r[8]);
  k.last_used_at = detail::opt_text(r[9]);
  return k;
}

audit_row to_audit(const pqxx::row& r) {
  audit_row a;
  a.id = r[0].as<int64_t>();
  a.at = detail::opt_text(r[1]);
  a.request_id = detail::opt_text(r[2]);
  a.principal = detail::opt_text(r[3]);
  a.role = detail::opt_text(r[4]);
  a.all_tenants = r[5].is_null() && !a.role.empty();
  a.tenants = detail::text_array_elements(r[5]);
  a.action = detail::opt_text(r[6]);
  a.target = detail::opt_text(r[7]);
  a.parameters = detail::opt_text(r[8]);
  a.outcome = detail::opt_text(r[9]);
  a.status = r[10].is_null() ? 0 : r[10].as<int>();
  a.counts = detail::opt_text(r[11]);
  a.client_addr = detail::opt_text(r[12]);
  return a;
}

std::string hex(std::string_view bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

/// Checks `k` and returns its tenants sorted and unique.
std::vector<std::string> checked_tenants(const new_key& k) {
  if (!valid_key_name(k.name))
    throw std::invalid_argument(
      "invalid key name: 1 to 64 letters, digits, '.', '_' or '-'");
  if (k.role != "viewer" && k.role != "operator" && k.role != "admin")
    throw std::invalid_argument(
      "invalid role: one of viewer, operator, admin");
  if (k.expires_in_s < 0)
    throw std::invalid_argument("invalid expiry: must not be negative");
  if (k.all_tenants) {
    if (!k.tenants.empty())
      throw std::invalid_argument(
        "all tenants (\"*\") and a tenant list are exclusive");
    return {};
  }
  if (k.tenants.empty())
    throw std::invalid_argument(
      "no tenants: a key needs a tenant list or all tenants (\"*\")");
  if (k.role == "admin")
    throw std::invalid_argument(
      "an admin key needs all tenants (\"*\"): admins manage every "
      "tenant's keys and read every tenant's audit rows");
  if (k.tenants.size() > 1000)
    throw std::invalid_argument("too many tenants: at most 1000");
  for (auto& t : k.tenants) {
    if (t.empty())
      throw std::invalid_argument("invalid tenant: empty");
    if (t == "*")
      throw std::invalid_argument(
        "invalid tenant \"*\": all tenants is not a tenant of a list");
    if (t.size() > 1024)
      throw std::invalid_argument("invalid tenant: longer than 1024 bytes");
    for (unsigned char c : t)
      if (c == ',' || c < 0x20 || c == 0x7f)
        throw std::invalid_argument(
          "invalid tenant: no ',' and no control characters");
  }
  auto out = k.tenants;
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

bool is_unique_violation(const pqxx::sql_error& e, const char* index) {
  return e.sqlstate() == "23505"
         && std::string_view{e.what()}.find(index) != std::string_view::npos;
}

} // namespace

bool valid_key_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= 64
         && std::all_of(name.begin(), name.end(), [](unsigned char c) {
              return std::isalnum(c) || c == '.' || c == '_' || c == '-';
            });
}

std::string generate_key() {
  unsigned char raw[32];
  if (RAND_bytes(raw, sizeof raw) != 1)
    throw std::runtime_error("cannot generate a key: OpenSSL RAND_bytes "
                             "failed");
  unsigned char b64[4 * ((sizeof raw + 2) / 3) + 1];
  auto n = EVP_EncodeBlock(b64, raw, sizeof raw);
  std::string key{"ces_"};
  for (int i = 0; i < n; ++i) {
    char c = static_cast<char>(b64[i]);
    if (c == '=')
      break;
    key += c == '+' ? '-' : c == '/' ? '_' : c;
  }
  OPENSSL_cleanse(raw, sizeof raw);
  OPENSSL_cleanse(b64, sizeof b64);
  return key;
}

std::string key_hash(std::string_view key) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(key.data(), key.size(), md, &len, EVP_sha256(), nullptr)
      != 1)
    throw std::runtime_error("cannot hash a key: OpenSSL EVP_Digest failed");
  return std::string(reinterpret_cast<const char*>(md), len);
}

struct auth_store::impl {
  auth_store_options opts;
  std::unique_ptr<detail::store_session> session;

  /// Runs `f(transaction)` in a read-write transaction and commits. Our own
  /// exceptions (invalid_argument, key_conflict) pass; any other libpqxx
  /// failure drops the connection and becomes an infra_error. `f` maps the
  /// SQL errors it expects itself.
  template <class F>
  auto run(const char* what, F f) {
    return session->run(what, std::move(f));
  }
};

auth_store::auth_store(std::string database_url, auth_store_options opts)
  : impl_(std::make_unique<impl>()) {
  impl_->opts = opts;
  impl_->session = std::make_unique<detail::store_session>(
    std::move(database_url), "auth",
    std::vector<std::string>{"SET TimeZone = 'UTC'"},
    opts.statement_timeout_ms);
}

auth_store::~auth_store() = default;

bool auth_store::connected() const {
  return impl_->session->connected();
}

namespace {

/// insert_key(): a key with that hash exists (committed meanwhile by another
/// instance registering the same bootstrap key; else a SHA-256 collision).
struct hash_taken {};

/// Inserts a key row and its audit row in `tx`. Throws key_conflict when the
/// name is taken, hash_taken when the hash is (the transaction is then
/// unusable).
api_key_row insert_key(pqxx::transaction_base& tx, const new_key& k,
                       const std::vector<std::string>& tenants,
                       const std::string& hash, const audit_entry& audit,
                       const char* action) {
  std::optional<int64_t> expires;
  if (k.expires_in_s > 0)
    expires = k.expires_in_s;
  tenant_scope scope;
  scope.tenants = tenants;
  pqxx::result res;
  try {
    res = tx.exec_params(
      std::string("INSERT INTO api_keys AS k (name, role, all_tenants, tenants,"
                  " key_hash, created_by, expires_at) VALUES ($1, $2, $3,"
                  " $4::text[], decode($5, 'hex'), $6,"
                  " now() + $7::bigint * interval '1 second')"
                  " RETURNING ")
        + key_columns + ", " + key_parameters + "::text",
      k.name, k.role, k.all_tenants, *tenants_array(tx, scope), hex(hash),
      k.created_by, expires);
  } catch (const pqxx::sql_error& e) {
    if (is_unique_violation(e, "api_keys_active_name_idx"))
      throw key_conflict("a key named \"" + k.name + "\" exists already");
    if (e.sqlstate() == "23505") // key_hash (its DETAIL shows the hash)
      throw hash_taken{};
    throw;
  }
  auto row = res[0];
  audit_entry a = audit;
  a.action = action;
  a.target = "key/" + k.name;
  a.outcome = "ok";
  auto mine = tx.exec_params1(
    "SELECT ($1::jsonb || $2::jsonb)::text",
    audit.parameters.empty() ? "{}" : audit.parameters,
    row[10].as<std::string>());
  a.parameters = mine[0].as<std::string>();
  insert_audit(tx, a);
  return to_key(row);
}

} // namespace

created_key auth_store::create_key(const new_key& k,
                                   const audit_entry& audit) {
  auto tenants = checked_tenants(k);
  created_key out;
  out.key = generate_key();
  auto hash = key_hash(out.key);
  try {
    out.row = impl_->run("api_keys create", [&](pqxx::transaction_base& tx) {
      return insert_key(tx, k, tenants, hash, audit, "key.create");
    });
  } catch (const hash_taken&) {
    throw infra_error("api_keys create: the new key's hash exists already");
  }
  return out;
}

std::vector<api_key_row> auth_store::list_keys(bool include_revoked) {
  return impl_->run("api_keys list", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec(std::string("SELECT ") + key_columns
                       + " FROM api_keys"
                       + (include_revoked ? "" : " WHERE revoked_at IS NULL")
                       + " ORDER BY name, id");
    std::vector<api_key_row> out;
    out.reserve(res.size());
    for (const auto& r : res)
      out.push_back(to_key(r));
    return out;
  });
}

bool auth_store::revoke_key(const std::string& name,
                            const audit_entry& audit) {
  return impl_->run("api_keys revoke", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(
      "UPDATE api_keys SET revoked_at = now() WHERE name = $1"
      " AND revoked_at IS NULL RETURNING id",
      name);
    if (res.empty())
      return false;
    audit_entry a = audit;
    a.action = "key.revoke";
    a.target = "key/" + name;
    a.outcome = "ok";
    insert_audit(tx, a);
    return true;
  });
}

std::optional<api_key_row> auth_store::find_active_key(std::string_view hash) {
  if (hash.size() != 32)
    return std::nullopt;
  return impl_->run("api_keys find", [&](pqxx::transaction_base& tx) {
    auto res = tx.exec_params(std::string("SELECT ") + key_columns
                                + " FROM api_keys WHERE key_hash ="
                                  " decode($1, 'hex') AND "
                                + active,
                              hex(hash));
    std::optional<api_key_row> out;
    if (!res.empty())
      out = to_key(res[0]);
    return out;
  });
}

void auth_store::touch_last_used(const std::vector<int64_t>& ids) {
  if (ids.empty())
    return;
  std::string list = "{";
  for (size_t i = 0; i < ids.size(); ++i)
    list += (i > 0 ? "," : "") + std::to_string(ids[i]);
  list += '}';
  impl_->run("api_keys touch", [&](pqxx::transaction_base& tx) {
    tx.exec_params("UPDATE api_keys SET last_used_at = now()"
                   " WHERE id = ANY($1::bigint[])",
                   list);
    return 0;
  });
}

std::string auth_store::register_bootstrap(std::string_view key,
                                           const audit_entry& audit) {
  bool shaped = key.size() == 47 && key.substr(0, 4) == "ces_"
                && std::all_of(key.begin() + 4, key.end(), [](char c) {
                     return std::isalnum(static_cast<unsigned char>(c))
                            || c == '-' || c == '_';
                   });
  if (!shaped)
    throw std::invalid_argument(
      "the admin token is not an API key (\"ces_\" and 43 base64url "
      "characters, as `keys create` prints)");
  auto hash = key_hash(key);
  new_key k;
  k.name = "bootstrap";
  k.role = "admin";
  k.all_tenants = true;
  k.created_by = "admin-token-file";
  // Two instances starting at once: the second's INSERT waits for the
  // first's transaction, then fails on a unique index; its second attempt
  // sees the committed row.
  for (int attempt = 1;; ++attempt) {
    try {
      return impl_->run("api_keys bootstrap", [&](pqxx::transaction_base& tx) {
        auto found = tx.exec_params(
          std::string("SELECT ") + active
            + " FROM api_keys WHERE key_hash = decode($1, 'hex')",
          hex(hash));
        if (!found.empty())
          return std::string(found[0][0].as<bool>() ? "unchanged"
                                                    : "revoked");
        auto old = tx.exec(
          "UPDATE api_keys SET revoked_at = now() WHERE name = 'bootstrap'"
          " AND revoked_at IS NULL RETURNING id");
        std::string outcome = old.empty() ? "registered" : "replaced";
        audit_entry a = audit;
        a.parameters = "{\"bootstrap\": \"" + outcome + "\"}";
        insert_key(tx, k, {}, hash, a, "key.bootstrap");
        return outcome;
      });
    } catch (const key_conflict&) {
      if (attempt >= 2)
        throw std::runtime_error("bootstrap key: another instance keeps "
                                 "replacing the key named \"bootstrap\"");
    } catch (const hash_taken&) {
      // The same key committed meanwhile: the next attempt sees it.
      if (attempt >= 2)
        throw infra_error("api_keys bootstrap: the key's hash exists but "
                          "is not visible");
    }
  }
}

void auth_store::write_audit(const std::vector<audit_entry>& rows) {
  if (rows.empty())
    return;
  impl_->run("audit_log write", [&](pqxx::transaction_base& tx) {
    for (auto& e : rows)
      insert_audit(tx, e);
    return 0;
  });
}

std::vector<audit_row> auth_store::audit_page(const audit_filter& f,
                                              int limit, int64_t before_id) {
  if (limit < 1 || limit > 1000)
    throw std::invalid_argument("invalid limit: 1 to 1000");
  if (before_id < 0)
    throw std::invalid_argument("invalid before id: must not be negative");
  auto opt = [](const std::string& s) -> std::optional<std::string> {
    if (s.empty())
      return std::nullopt;
    return s;
  };
  return impl_->run("audit_log page", [&](pqxx::transaction_base& tx) {
    // from/to first, on their own, so that a data error names the one at
    // fault (it aborts the transaction; the connection stays).
    for (auto [label, value] : {std::pair{"from", &f.from},
                                std::pair{"to", &f.to}}) {
      if (value->empty())
        continue;
      try {
        tx.exec_params("SELECT $1::timestamptz", *value);
      } catch (const pqxx::sql_error& e) {
        if (!detail::is_data_sqlstate(e.sqlstate()))
          throw;
        throw std::invalid_argument(std::string("invalid ") + label
                                    + ": not a timestamp (RFC 3339, e.g."
                                      " 2024-05-01T12:00:00Z)");
      }
    }
    auto res = tx.exec_params(
      std::string("SELECT ") + audit_columns
        + " FROM audit_log WHERE ($1::text IS NULL OR action = $1)"
          " AND ($2::text IS NULL OR principal = $2)"
          " AND ($3::timestamptz IS NULL OR at >= $3::timestamptz)"
          " AND ($4::timestamptz IS NULL OR at < $4::timestamptz)"
          " AND ($5::bigint = 0 OR id < $5::bigint)"
          " ORDER BY id DESC LIMIT $6",
      opt(f.action), opt(f.principal), opt(f.from), opt(f.to), before_id,
      limit);
    std::vector<audit_row> out;
    out.reserve(res.size());
    for (const auto& r : res)
      out.push_back(to_audit(r));
    return out;
  });
}

} // namespace ces::storage
