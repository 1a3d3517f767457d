// JWT bearer tokens from an identity provider: the JWKS document, the token
// verifier and where the JWKS comes from. Plain C++ (no CAF, no RESTinio):
// the AUTH actor (actors/auth.cpp, a detached actor) owns a jwt_verifier and
// a jwks_source, fetches the JWKS at start and again when a token names an
// unknown `kid` (at most once per min_refresh).
//
// Signatures are checked by libjwt 1.10 and OpenSSL 3; nothing here is
// hand-written crypto. libjwt 1.10 takes the algorithm from the token itself,
// so the verifier first reads the header, refuses every algorithm other than
// RS256, ES256 and HS256, and picks the key by (`kid`, key type) so that a
// token can only be checked with a key made for its algorithm: an HS256 token
// is never checked against a JWKS key (alg confusion), RS256 only against an
// RSA key, ES256 only against an EC P-256 key.
#pragma once

#include "api/auth.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ces::auth {

/// What a token must satisfy (settings JWT_ISSUER, JWT_AUDIENCE,
/// JWT_ROLE_CLAIM, JWT_TENANTS_CLAIM, JWT_HS256_SECRET_FILE).
struct jwt_config {
  /// `iss` must equal it (empty: every token is refused: wrong_issuer).
  std::string issuer;
  /// `aud` must equal it or be an array holding it (empty: every token is
  /// refused: wrong_audience).
  std::string audience;
  /// The claim holding "viewer", "operator" or "admin".
  std::string role_claim = "crm_role";
  /// The claim holding "*" or a non-empty array of tenant ids.
  std::string tenants_claim = "crm_tenants";
  /// The HS256 key. Empty, or shorter than min_hs256_secret_bytes (RFC 7518
  /// 3.2: at least the hash size): HS256 tokens are refused.
  std::string hs256_secret;
  /// Clock skew allowed on `exp` and `nbf`, in seconds.
  int64_t leeway_s = 30;
};

/// A parsed JWKS document (RFC 7517): the signature keys it holds, as PEM
/// public keys, by `kid`.
///
/// Usable keys: RSA (kty "RSA", n, e; alg "RS256" or absent; modulus of
/// 2048 to 16384 bits) and EC P-256 (kty "EC", crv "P-256", x, y; alg "ES256"
/// or absent), with `use` "sig" or absent. Every other entry (other key
/// types, curves or algorithms, "use": "enc", bad or weak key material, a
/// kid longer than 256 bytes, a second key with the same kid and type) is
/// skipped and counted in skipped(). Private members (d, p, q, ...) are
/// ignored, never kept.
class jwks {
public:
  enum class key_type : uint8_t { rsa, ec_p256 };

  struct key {
    /// Empty when the document gives none.
    std::string kid;
    key_type type = key_type::rsa;
    /// SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
    std::string pem;
  };

  /// Largest document accepted, in bytes.
  static constexpr size_t max_document_bytes = 1024 * 1024;
  /// Most entries in "keys" accepted (usable or not).
  static constexpr size_t max_keys = 100;

  /// Parses a JWKS document. nullopt (and `*error`, if given, says why) when
  /// it is too large, not JSON, has no "keys" array, more than max_keys
  /// entries, or no usable key.
  static std::optional<jwks> parse(std::string_view json,
                                   std::string* error = nullptr);

  /// The usable keys, in document order.
  const std::vector<key>& keys() const noexcept {
    return keys_;
  }

  /// Entries of the document that were not usable.
  size_t skipped() const noexcept {
    return skipped_;
  }

  /// The key for a token's `kid` and algorithm's key type.
  /// - `kid` non-empty: the key with exactly that kid and type (a key
  ///   without kid never matches a token with one).
  /// - `kid` empty (the token names none): the set's only key when it holds
  ///   exactly one usable key and it has that type; with several keys a
  ///   token must name one.
  /// nullptr when there is none.
  const key* find(std::string_view kid, key_type type) const noexcept;

  /// Whether some key (of any type) has this kid.
  bool has_kid(std::string_view kid) const noexcept;

private:
  std::vector<key> keys_;
  size_t skipped_ = 0;
};

/// Verifies JWT bearer tokens (compact JWS) and maps their claims to a
/// principal. Never blocks, never logs. verify() may be called from several
/// threads at once; set_jwks() must not run concurrently with verify().
/// Movable, not copyable.
class jwt_verifier {
public:
  /// Longest token accepted, in bytes.
  static constexpr size_t max_token_bytes = 8192;
  /// Shortest HS256 secret accepted (256 bits).
  static constexpr size_t min_hs256_secret_bytes = 32;
  /// Most verified tokens remembered (see verify()).
  static constexpr size_t max_cached_tokens = 10000;

  explicit jwt_verifier(jwt_config cfg);
  ~jwt_verifier();
  jwt_verifier(jwt_verifier&&) noexcept;
  jwt_verifier& operator=(jwt_verifier&&) noexcept;

  /// Replaces the key set (a JWKS rotation) and forgets every verified
  /// token.
  void set_jwks(jwks keys);

  /// Whether a key set has been given.
  bool has_jwks() const noexcept {
    return keys_.has_value();
  }

  /// Whether HS256 tokens can verify (a long enough secret is configured).
  bool hs256_enabled() const noexcept;

  const jwt_config& config() const noexcept {
    return cfg_;
  }

  struct outcome {
    bool ok = false;
    /// When ok: name = `sub`, kind = "jwt", the role and tenant scope of the
    /// claims (unknown_tenant for admins only).
    principal who;
    /// When !ok: a short stable reason for logs and audit rows, never the
    /// token nor a key: malformed, token_too_long, alg_none (alg "none" or
    /// absent), alg_not_allowed (not RS256/ES256/HS256, or HS256 without a
    /// secret), bad_typ, crit_unsupported, no_jwks (RS256/ES256 but no key
    /// set yet: the caller may fetch one and retry), unknown_kid,
    /// missing_kid (no kid, several keys), wrong_key_type (the kid names a
    /// key of another type), bad_signature, wrong_issuer, wrong_audience,
    /// missing_exp, expired, not_yet_valid, missing_sub, bad_sub (longer
    /// than 256 bytes or control characters), bad_role, bad_tenants.
    std::string error;
    /// Non-empty only when error is "unknown_kid": the kid the token names
    /// (1 to 256 bytes, no control characters), not in the key set.
    /// The caller may refresh the JWKS and verify again.
    std::string unknown_kid;
    /// When ok: the token's `exp` (seconds since the epoch).
    int64_t expires_at = 0;
  };

  /// Verifies `token` at `now_s` (seconds since the epoch): header, key,
  /// signature, then claims, in that order; the first failure is reported.
  ///
  /// A token that verified is remembered (by its SHA-256, not the token
  /// itself; at most max_cached_tokens, the expired ones forgotten first):
  /// the next verify() of the same token only checks exp and nbf again.
  /// libjwt 1.10 parses the PEM key on every call, which OpenSSL 3.0 makes
  /// cost about a millisecond; a client reusing its token pays it once.
  outcome verify(std::string_view token, int64_t now_s) const;

  /// Tokens remembered now.
  size_t cached_tokens() const;

private:
  outcome verify_signed(std::string_view token, int64_t now_s,
                        int64_t* nbf) const;

  struct token_cache;
  jwt_config cfg_;
  std::optional<jwks> keys_;
  std::unique_ptr<token_cache> cache_;
};

/// Where the JWKS comes from (setting JWT_JWKS): a file path or an https://
/// URL. Not thread-safe; fetch() blocks (file read or HTTPS GET of up to
/// 5 s): call it from a detached actor only.
class jwks_source {
public:
  using clock = std::chrono::steady_clock;

  /// `location`: a file path, or an https:// URL (any other scheme, http://
  /// included, is refused by fetch()). `ca_file`: PEM bundle of the CAs to
  /// trust for https (empty: the system's). `min_refresh`: least time
  /// between two fetch attempts that may_refresh() allows.
  jwks_source(std::string location, std::string ca_file,
              std::chrono::seconds min_refresh);

  /// Reads and parses the document. HTTPS: libcurl, https only (redirects
  /// too, at most 3), peer and host verified, 3 s connect timeout, 5 s in
  /// all, body at most jwks::max_document_bytes, status 200 only. On failure
  /// nullopt and `*error` (if given) says why, without the URL's user info,
  /// query or any secret. Records the attempt time for may_refresh().
  std::optional<jwks> fetch(std::string* error = nullptr);

  /// True unless a fetch was attempted less than min_refresh before `now`.
  bool may_refresh(clock::time_point now) const noexcept;

  /// When fetch() was last called (nullopt: never).
  std::optional<clock::time_point> last_attempt() const noexcept {
    return last_attempt_;
  }

  /// Whether location is a URL (otherwise a file path).
  bool is_url() const noexcept;

  const std::string& location() const noexcept {
    return location_;
  }

private:
  std::optional<std::string> read(std::string* error) const;

  std::string location_;
  std::string ca_file_;
  std::chrono::seconds min_refresh_;
  std::optional<clock::time_point> last_attempt_;
};

} // namespace ces::auth
