// API keys and the audit log in PostgreSQL (sql/0004_security.sql). No CAF;
// pqxx stays behind a pimpl, OpenSSL in the .cpp.
//
// A key is "ces_" + 43 base64url characters (32 random bytes); only its
// SHA-256 is stored (api_keys.key_hash). Every change of api_keys commits in
// one transaction with its audit_log row. Nothing here puts a key or a hash
// into an exception message.
#pragma once

#include "storage/journal.hpp"
#include "storage/model.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ces::storage {

/// Whether `name` is a valid key name: ^[A-Za-z0-9._-]{1,64}$.
bool valid_key_name(std::string_view name) noexcept;

/// A new API key: "ces_" + 43 base64url characters (no padding) of 32 bytes
/// from OpenSSL's RAND_bytes (the shape auth::looks_like_key accepts).
/// Throws std::runtime_error when the random generator fails.
std::string generate_key();

/// SHA-256 of `key`: 32 raw bytes (api_keys.key_hash).
std::string key_hash(std::string_view key);

/// One row of api_keys. Timestamps are RFC 3339 UTC with microseconds
/// (2024-05-01T12:00:00.123456Z); empty: NULL.
struct api_key_row {
  int64_t id = 0;
  std::string name;
  std::string role; // viewer, operator, admin
  bool all_tenants = false;
  std::vector<std::string> tenants; // sorted, unique; empty when all_tenants
  std::string created_at;
  std::string created_by;
  std::string expires_at;
  std::string revoked_at;
  std::string last_used_at;
};

/// What create_key() stores.
struct new_key {
  /// ^[A-Za-z0-9._-]{1,64}$, unique among the keys not revoked.
  std::string name;
  /// viewer, operator, admin.
  std::string role;
  /// true: every tenant ("*"); `tenants` must then be empty.
  bool all_tenants = false;
  /// At least one when !all_tenants; none empty, none "*", no ',' and no
  /// control characters, at most 1024 bytes each and 1000 of them.
  std::vector<std::string> tenants;
  /// Lifetime in seconds from now; 0: never expires. Negative: invalid.
  int64_t expires_in_s = 0;
  /// Who creates it: "cli:<user>", a key name, a JWT sub.
  std::string created_by;
};

/// A key just created: its row and the key itself (shown once, never
/// stored).
struct created_key {
  api_key_row row;
  std::string key;
};

/// create_key(): a key not revoked already has that name.
class key_conflict : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// audit_page() filters; empty fields do not filter.
struct audit_filter {
  std::string action;    // exact match
  std::string principal; // exact match
  std::string from;      // at >= from (RFC 3339; no offset: UTC)
  std::string to;        // at < to
};

/// One row of audit_log. Timestamps as in api_key_row.
struct audit_row {
  int64_t id = 0;
  std::string at;
  std::string request_id;
  std::string principal;
  std::string role;
  /// tenants NULL and a role: all tenants. Without a role (unauthenticated)
  /// both are empty/false.
  bool all_tenants = false;
  std::vector<std::string> tenants;
  std::string action;
  std::string target;
  std::string parameters; // JSON object text
  std::string outcome;
  int status = 0;         // 0: NULL
  std::string counts;     // JSON text; empty: NULL
  std::string client_addr;
};

struct auth_store_options {
  /// statement_timeout of the store's session (0: the server's default).
  int statement_timeout_ms = 5000;
};

/// api_keys and audit_log over one connection of its own. Connects lazily on
/// first use and again on the next call after a failure. Not thread-safe.
///
/// Errors: std::invalid_argument for invalid input (the message says what,
/// and never holds a key); key_conflict (create_key); infra_error when
/// PostgreSQL is unreachable or a statement fails otherwise.
class auth_store {
public:
  /// Does not connect.
  explicit auth_store(std::string database_url, auth_store_options opts = {});
  ~auth_store();
  auth_store(const auth_store&) = delete;
  auth_store& operator=(const auth_store&) = delete;

  /// Validates `k`, generates a key and inserts its row together with the
  /// audit row of `audit` (action "key.create", target "key/<name>", outcome
  /// "ok", parameters: the caller's object merged with {role, tenants ("*"
  /// or an array), expires_at (null: never)}; never the key or its hash)
  /// in one transaction.
  created_key create_key(const new_key& k, const audit_entry& audit);

  /// Every key not revoked (with `include_revoked`: every key), by name then
  /// id. Expired keys are listed (expires_at says so).
  std::vector<api_key_row> list_keys(bool include_revoked);

  /// Revokes the key not revoked named `name`, with the audit row of `audit`
  /// (action "key.revoke", target "key/<name>", outcome "ok"), in one
  /// transaction. False when there is none: nothing written (the caller
  /// audits the failed attempt with write_audit()).
  bool revoke_key(const std::string& name, const audit_entry& audit);

  /// The key with SHA-256 `hash` (key_hash()) when it is neither revoked nor
  /// expired. One lookup on the unique index of key_hash.
  std::optional<api_key_row> find_active_key(std::string_view hash);

  /// Sets last_used_at = now() of the keys `ids`, in one UPDATE (callers
  /// batch: at most once per key every few seconds).
  void touch_last_used(const std::vector<int64_t>& ids);

  /// ADMIN_TOKEN_FILE at start: registers `key` as the admin key
  /// "bootstrap" for all tenants (created_by "admin-token-file"). Returns
  /// - "unchanged": a key with that hash is active; nothing written;
  /// - "registered": inserted (no active "bootstrap" key before);
  /// - "replaced": the active key named "bootstrap" revoked, this one
  ///   inserted;
  /// - "revoked": that key exists but was revoked or has expired; nothing
  ///   written (a revoked key is never revived: put a new key in the file).
  /// Writes happen in one transaction with the audit row of `audit` (action
  /// "key.bootstrap", target "key/bootstrap"). Safe when several instances
  /// start at once. Throws std::invalid_argument (the message never holds
  /// the key) when `key` does not look like a key.
  std::string register_bootstrap(std::string_view key,
                                 const audit_entry& audit);

  /// Inserts `rows` into audit_log in one transaction (e.g. a batch of
  /// refused requests). Nothing for an empty vector.
  void write_audit(const std::vector<audit_entry>& rows);

  /// Audit rows matching `f`, newest first (highest id first), at most
  /// `limit` (1..1000, else std::invalid_argument), with id < before_id
  /// when before_id > 0 (keyset paging: pass the last id of a page).
  /// from/to that PostgreSQL cannot read as timestamptz: invalid_argument.
  std::vector<audit_row> audit_page(const audit_filter& f, int limit,
                                    int64_t before_id = 0);

  /// True when the connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
