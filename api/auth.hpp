// Authentication and authorisation of the operator API: the pure parts (no
// I/O, no CAF, no RESTinio): roles, principals, the Authorization header,
// key format and the token buckets of the rate limits. The AUTH actor
// (actors/auth.cpp) resolves credentials into a principal (API keys in
// PostgreSQL, JWTs through api/jwt.hpp); the HTTP_BRIDGE checks the route's
// role and the tenant scope.
#pragma once

#include "api/routes.hpp"
#include "storage/model.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace ces::auth {

/// Operator roles (api/routes.hpp: each route names the least it needs).
using role = api::role;

/// "none", "viewer", "operator", "admin".
const char* to_string(role r) noexcept;

/// "viewer", "operator", "admin"; anything else (also "none"): nullopt.
std::optional<role> parse_role(std::string_view s) noexcept;

/// An authenticated caller.
struct principal {
  /// Key name, JWT `sub`, or "anonymous" (API_AUTH=off).
  std::string name;
  /// "key", "jwt" or "none" (API_AUTH=off).
  std::string kind;
  role granted = role::none;
  /// Tenants it may see. unknown_tenant is set for admins only.
  tenant_scope scope;
};

/// The principal as recorded in audit rows (request id and address added by
/// the caller).
requester to_requester(const principal& p);

/// The role a route needs (route_spec::min_role).
bool may(const principal& p, api::route_kind route);

/// What the Authorization header holds.
struct credentials {
  enum class scheme : uint8_t {
    none,      // no Authorization header
    bearer,    // Bearer <token>: an API key or a JWT
    basic,     // Basic base64(user:password): user = key name, password = key
    malformed, // present but unusable (unknown scheme, bad base64, ...)
  };
  scheme kind = scheme::none;
  /// bearer: the token; basic: the password.
  std::string secret;
  /// basic: the user name.
  std::string user;
};

/// Parses an Authorization header value (empty: none). Scheme names are
/// case-insensitive (RFC 9110); never throws except bad_alloc.
credentials parse_authorization(std::string_view header);

/// API keys look like `ces_` + 43 base64url characters (256 random bits).
inline constexpr std::string_view key_prefix = "ces_";

/// True when `token` has the shape of an API key (not whether it is valid).
bool looks_like_key(std::string_view token) noexcept;

/// True when `token` has the shape of a JWT (three base64url parts).
bool looks_like_jwt(std::string_view token) noexcept;

/// A token bucket: `rate` tokens per second up to `burst`. Not thread-safe.
class token_bucket {
public:
  using clock = std::chrono::steady_clock;

  token_bucket(double rate, double burst, clock::time_point now);

  /// Takes `n` tokens if there are; else false and `retry_after` is when
  /// there will be (0 if never: n > burst).
  bool take(double n, clock::time_point now, clock::duration* retry_after);

  /// Tokens available now.
  double available(clock::time_point now);

private:
  void refill(clock::time_point now);
  double rate_;
  double burst_;
  double tokens_;
  clock::time_point last_;
};

/// Token buckets by key (tenant id, client address), at most `max_keys` of
/// them. At the bound a new key makes room: the least recently used bucket
/// that is full again is forgotten (a forgotten bucket is a full one, so
/// nothing changes); else, of the 64 least recently used, the one with the
/// most tokens (a drained bucket, e.g. a brute-forcing address, is kept).
class keyed_buckets {
public:
  using clock = token_bucket::clock;

  keyed_buckets(double rate, double burst, size_t max_keys = 100000);

  /// token_bucket::take for the bucket of `key`.
  bool take(const std::string& key, double n, clock::time_point now,
            clock::duration* retry_after = nullptr);

  /// Whether the bucket of `key` holds at least one token now (nothing
  /// taken); else `retry_after` is when it will.
  bool allowed(const std::string& key, clock::time_point now,
               clock::duration* retry_after = nullptr);

  /// Buckets held now.
  size_t size() const noexcept {
    return buckets_.size();
  }

private:
  double rate_;
  double burst_;
  size_t max_keys_;
  std::list<std::string> lru_; // front: most recently used
  struct entry {
    token_bucket bucket;
    std::list<std::string>::iterator pos;
  };
  std::unordered_map<std::string, entry> buckets_;
};

} // namespace ces::auth
