// AUTH: who is asking. Resolves the Authorization header of an operator
// request into a principal (API keys: SHA-256 lookup in PostgreSQL, cached
// for auth-key-cache-ms; JWTs: api/jwt.hpp), limits failed attempts per
// client address, and writes the audit rows of refused requests (and of
// actions that have no transaction of their own) in batches. Detached: key
// lookups and the JWKS refresh block.
#pragma once

#include "actors/interfaces.hpp"

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace ces {

class metrics;
struct settings;

/// An active API key as the AUTH actor needs it.
struct key_identity {
  int64_t id = 0;
  std::string name;
  auth::role granted = auth::role::none;
  tenant_scope scope;
};

/// The AUTH actor's PostgreSQL side (blocking). Every call may throw
/// storage::infra_error (PostgreSQL unreachable).
class auth_backend {
public:
  virtual ~auth_backend() = default;
  /// The active (not revoked, not expired) key `key`, or nullopt.
  virtual std::optional<key_identity> find_key(const std::string& key) = 0;
  /// Sets last_used_at of these keys to now.
  virtual void touch(const std::vector<int64_t>& ids) = 0;
  /// Appends audit rows, in one transaction.
  virtual void write_audit(const std::vector<audit_entry>& rows) = 0;
};

using auth_backend_factory = std::function<std::unique_ptr<auth_backend>()>;

/// The result of checking a JWT.
struct jwt_check {
  bool ok = false;
  auth::principal who;
  /// Why it was refused (short, stable; never the token).
  std::string error;
};

/// Verifies a bearer JWT (may block: a JWKS refresh for an unknown kid).
/// Empty: JWTs are refused.
using jwt_checker = std::function<jwt_check(const std::string& token)>;

struct auth_settings {
  /// false (API_AUTH=off): every request is the admin "anonymous" of every
  /// tenant; the actor only writes audit rows and repeats the warning.
  bool enabled = true;
  /// A key looked up in PostgreSQL is trusted this long.
  std::chrono::milliseconds key_cache{500};
  /// While PostgreSQL is unreachable, a key it confirmed at most this long
  /// ago is still accepted (revoking needs PostgreSQL too); older or unknown
  /// keys get db_unavailable (503).
  std::chrono::milliseconds key_stale_grace{std::chrono::minutes(10)};
  /// Failed authentications per client address: rate and burst.
  double failures_per_s = 0.5;
  double failures_burst = 10;
  /// Client addresses tracked at most (see auth::keyed_buckets).
  size_t max_addresses = 100000;
  /// Queued audit rows are written this often (or when batch is full).
  std::chrono::milliseconds audit_flush{500};
  size_t audit_batch = 500;
  /// Audit rows queued at most while PostgreSQL is away; beyond it refused
  /// requests are counted in one summary row per address instead.
  size_t audit_queue_max = 10000;
  /// last_used_at is written this often at most.
  std::chrono::milliseconds touch_interval{5000};
  /// With auth off, the warning is logged again this often.
  std::chrono::milliseconds off_warning{std::chrono::minutes(10)};
};

struct auth_state {
  auth_backend_factory make_backend;
  std::unique_ptr<auth_backend> backend;
  jwt_checker check_jwt;
  auth_settings cfg;
  metrics* stats = nullptr;
  struct cached_key {
    key_identity key;
    /// Trusted without asking PostgreSQL until then.
    std::chrono::steady_clock::time_point until;
    /// When PostgreSQL last confirmed it (see auth_settings::key_stale_grace).
    std::chrono::steady_clock::time_point checked;
    bool stale_logged = false;
  };
  /// By the key's SHA-256 (never the key itself).
  std::unordered_map<std::string, cached_key> keys;
  std::unique_ptr<auth::keyed_buckets> failures;
  std::vector<audit_entry> audit_queue;
  /// Refusals not queued (queue full), by client address.
  std::unordered_map<std::string, uint64_t> audit_overflow;
  std::vector<int64_t> used_keys;
  std::chrono::steady_clock::time_point last_touch{};
  bool flush_scheduled = false;
  static inline const char* name = "auth";
};

auth_actor::behavior_type
authenticator(auth_actor::stateful_pointer<auth_state> self,
              auth_settings cfg, auth_backend_factory make_backend,
              jwt_checker check_jwt, metrics* stats);

/// auth_backend on storage::auth_store (a connection of its own).
auth_backend_factory auth_backend_on_store(std::string database_url);

/// The JWT verifier the settings ask for (JWT_JWKS, JWT_HS256_SECRET_FILE,
/// JWT_ISSUER, ...); empty when JWTs are off. Reads the HS256 secret file
/// and loads the JWKS once (a URL that does not answer is fetched again on
/// the first token). Throws std::runtime_error naming the file (never its
/// content) when a file cannot be read or the secret is too short.
jwt_checker make_jwt_checker(const settings& s);

/// A key or secret from a file (ADMIN_TOKEN_FILE): its content without
/// trailing whitespace. Throws std::runtime_error naming the file (never its
/// content) when unreadable, empty or larger than 64 KiB.
std::string read_key_file(const std::string& path, const char* what);

/// The principal of every request when API_AUTH=off.
auth::principal anonymous_admin();

} // namespace ces
