// JWKS parsing (OpenSSL 3 turns JWK members into PEM public keys) and JWT
// verification (libjwt 1.10 checks the signature). See api/jwt.hpp.
#include "api/jwt.hpp"

#include "storage/headers_json.hpp"
#include "storage/validate.hpp"

#include <jwt.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <memory>
#include <mutex>
#include <unordered_map>

namespace ces::auth {

namespace {

using json = nlohmann::json;

constexpr size_t max_kid_bytes = 256;
constexpr size_t max_sub_bytes = 256;

bool is_b64url(char c) noexcept {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

/// base64url without padding (RFC 7515 2), as JWS and JWK use it.
bool b64url_decode(std::string_view in, std::string& out) {
  if (!std::all_of(in.begin(), in.end(), is_b64url))
    return false;
  std::string std_b64(in);
  for (auto& c : std_b64)
    c = c == '-' ? '+' : c == '_' ? '/' : c;
  return storage::decode_base64(std_b64, out);
}

/// Parses `text` as JSON; a discarded value when it is not JSON.
json parse_json(std::string_view text) {
  return json::parse(text.begin(), text.end(), nullptr, false);
}

/// A string member of `obj`, or nullptr if absent or not a string.
const std::string* string_member(const json& obj, const char* name) {
  auto i = obj.find(name);
  if (i == obj.end() || !i->is_string())
    return nullptr;
  return i->get_ptr<const std::string*>();
}

// -- OpenSSL helpers ----------------------------------------------------------

struct ossl_deleter {
  void operator()(EVP_PKEY* p) const noexcept {
    EVP_PKEY_free(p);
  }
  void operator()(EVP_PKEY_CTX* p) const noexcept {
    EVP_PKEY_CTX_free(p);
  }
  void operator()(OSSL_PARAM_BLD* p) const noexcept {
    OSSL_PARAM_BLD_free(p);
  }
  void operator()(OSSL_PARAM* p) const noexcept {
    OSSL_PARAM_free(p);
  }
  void operator()(BIGNUM* p) const noexcept {
    BN_free(p);
  }
  void operator()(BIO* p) const noexcept {
    BIO_free(p);
  }
};

template <class T>
using ossl_ptr = std::unique_ptr<T, ossl_deleter>;

/// A public key from OpenSSL parameters, checked (EVP_PKEY_public_check:
/// RSA modulus and exponent sane, EC point on the curve); null on failure.
ossl_ptr<EVP_PKEY> key_from_params(const char* type, OSSL_PARAM_BLD* bld) {
  ossl_ptr<OSSL_PARAM> params{OSSL_PARAM_BLD_to_param(bld)};
  ossl_ptr<EVP_PKEY_CTX> ctx{EVP_PKEY_CTX_new_from_name(nullptr, type,
                                                        nullptr)};
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) <= 0)
    return nullptr;
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params.get())
      <= 0)
    return nullptr;
  ossl_ptr<EVP_PKEY> pkey{raw};
  ossl_ptr<EVP_PKEY_CTX> check{EVP_PKEY_CTX_new_from_pkey(nullptr, pkey.get(),
                                                          nullptr)};
  if (!check || EVP_PKEY_public_check(check.get()) != 1)
    return nullptr;
  return pkey;
}

/// SubjectPublicKeyInfo PEM of `pkey` (empty on failure).
std::string to_pem(EVP_PKEY* pkey) {
  ossl_ptr<BIO> mem{BIO_new(BIO_s_mem())};
  if (!mem || PEM_write_bio_PUBKEY(mem.get(), pkey) != 1)
    return {};
  char* data = nullptr;
  auto len = BIO_get_mem_data(mem.get(), &data);
  if (len <= 0 || data == nullptr)
    return {};
  return std::string(data, static_cast<size_t>(len));
}

BIGNUM* to_bn(const std::string& bytes) {
  return BN_bin2bn(reinterpret_cast<const unsigned char*>(bytes.data()),
                   static_cast<int>(bytes.size()), nullptr);
}

/// PEM of an RSA JWK (n, e); empty when unusable.
std::string rsa_pem(const json& jwk) {
  auto n64 = string_member(jwk, "n");
  auto e64 = string_member(jwk, "e");
  std::string n, e;
  if (!n64 || !e64 || !b64url_decode(*n64, n) || !b64url_decode(*e64, e)
      || n.empty() || e.empty() || n.size() > 16384 / 8 + 1 || e.size() > 64)
    return {};
  ossl_ptr<BIGNUM> bn_n{to_bn(n)};
  ossl_ptr<BIGNUM> bn_e{to_bn(e)};
  ossl_ptr<OSSL_PARAM_BLD> bld{OSSL_PARAM_BLD_new()};
  if (!bn_n || !bn_e || !bld
      || BN_num_bits(bn_n.get()) < 2048 || BN_num_bits(bn_n.get()) > 16384
      || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get())
      || !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E,
                                 bn_e.get()))
    return {};
  auto pkey = key_from_params("RSA", bld.get());
  return pkey ? to_pem(pkey.get()) : std::string{};
}

/// PEM of an EC P-256 JWK (x, y, 32 bytes each); empty when unusable.
std::string ec_p256_pem(const json& jwk) {
  auto x64 = string_member(jwk, "x");
  auto y64 = string_member(jwk, "y");
  std::string x, y;
  if (!x64 || !y64 || !b64url_decode(*x64, x) || !b64url_decode(*y64, y)
      || x.size() != 32 || y.size() != 32)
    return {};
  // Uncompressed point (SEC 1 2.3.3): 0x04 || x || y.
  std::string point = "\x04" + x + y;
  ossl_ptr<OSSL_PARAM_BLD> bld{OSSL_PARAM_BLD_new()};
  if (!bld
      || !OSSL_PARAM_BLD_push_utf8_string(bld.get(),
                                          OSSL_PKEY_PARAM_GROUP_NAME,
                                          "prime256v1", 0)
      || !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY,
                                           point.data(), point.size()))
    return {};
  auto pkey = key_from_params("EC", bld.get());
  return pkey ? to_pem(pkey.get()) : std::string{};
}

/// The usable key of one "keys" entry, or nullopt (skipped).
std::optional<jwks::key> parse_key(const json& jwk) {
  if (!jwk.is_object())
    return std::nullopt;
  auto kty = string_member(jwk, "kty");
  if (!kty)
    return std::nullopt;
  if (jwk.contains("use")) {
    auto use = string_member(jwk, "use");
    if (!use || *use != "sig")
      return std::nullopt;
  }
  jwks::key k;
  if (jwk.contains("kid")) {
    auto kid = string_member(jwk, "kid");
    if (!kid || kid->empty() || kid->size() > max_kid_bytes)
      return std::nullopt;
    k.kid = *kid;
  }
  const std::string* alg = nullptr;
  if (jwk.contains("alg") && !(alg = string_member(jwk, "alg")))
    return std::nullopt;
  if (*kty == "RSA") {
    if (alg && *alg != "RS256")
      return std::nullopt;
    k.type = jwks::key_type::rsa;
    k.pem = rsa_pem(jwk);
  } else if (*kty == "EC") {
    auto crv = string_member(jwk, "crv");
    if (!crv || *crv != "P-256" || (alg && *alg != "ES256"))
      return std::nullopt;
    k.type = jwks::key_type::ec_p256;
    k.pem = ec_p256_pem(jwk);
  }
  // OpenSSL's error queue is per thread: leave nothing in it for libjwt or
  // libcurl to trip over.
  ERR_clear_error();
  if (k.pem.empty())
    return std::nullopt;
  return k;
}

// -- Claims -------------------------------------------------------------------

/// A NumericDate (RFC 7519 2): seconds since the epoch, possibly with a
/// fraction (floored) and clamped to int64; nullopt when not a number.
std::optional<int64_t> numeric_date(const json& v) {
  if (v.is_number_integer())
    return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    auto u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX
                                                 : static_cast<int64_t>(u);
  }
  if (v.is_number_float()) {
    auto d = v.get<double>();
    if (!std::isfinite(d))
      return std::nullopt;
    if (d >= 9.2e18)
      return INT64_MAX;
    if (d <= -9.2e18)
      return INT64_MIN;
    return static_cast<int64_t>(std::floor(d));
  }
  return std::nullopt;
}

bool has_control_chars(std::string_view s) noexcept {
  return std::any_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
  });
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

/// SHA-256 of `s` (empty if OpenSSL fails).
std::string sha256(std::string_view s) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(s.data(), s.size(), md, &len, EVP_sha256(), nullptr) != 1)
    return {};
  return std::string(reinterpret_cast<char*>(md), len);
}

struct jwt_deleter {
  void operator()(jwt_t* p) const noexcept {
    jwt_free(p);
  }
};

} // namespace

// -- jwks ---------------------------------------------------------------------

std::optional<jwks> jwks::parse(std::string_view text, std::string* error) {
  auto fail = [error](std::string why) -> std::optional<jwks> {
    if (error)
      *error = std::move(why);
    return std::nullopt;
  };
  if (text.size() > max_document_bytes)
    return fail("JWKS document larger than "
                + std::to_string(max_document_bytes) + " bytes");
  auto doc = parse_json(text);
  if (doc.is_discarded())
    return fail("JWKS document is not JSON");
  if (!doc.is_object())
    return fail("JWKS document is not a JSON object");
  auto keys = doc.find("keys");
  if (keys == doc.end() || !keys->is_array())
    return fail("JWKS document has no \"keys\" array");
  if (keys->size() > max_keys)
    return fail("JWKS document has " + std::to_string(keys->size())
                + " keys, more than " + std::to_string(max_keys));
  jwks set;
  for (auto& entry : *keys) {
    auto k = parse_key(entry);
    bool dup = k && std::any_of(set.keys_.begin(), set.keys_.end(),
                                [&](const key& have) {
                                  return have.kid == k->kid
                                         && have.type == k->type;
                                });
    if (!k || dup)
      ++set.skipped_;
    else
      set.keys_.push_back(std::move(*k));
  }
  if (set.keys_.empty())
    return fail("JWKS document has no usable key (RSA RS256 or EC P-256 "
                "ES256 signature keys; "
                + std::to_string(set.skipped_) + " skipped)");
  return set;
}

const jwks::key* jwks::find(std::string_view kid,
                            key_type type) const noexcept {
  if (kid.empty()) {
    if (keys_.size() == 1 && keys_.front().type == type)
      return &keys_.front();
    return nullptr;
  }
  for (auto& k : keys_)
    if (k.type == type && k.kid == kid)
      return &k;
  return nullptr;
}

bool jwks::has_kid(std::string_view kid) const noexcept {
  return std::any_of(keys_.begin(), keys_.end(),
                     [&](const key& k) { return k.kid == kid; });
}

// -- jwt_verifier -------------------------------------------------------------

/// Verified tokens by SHA-256: what verify() needs to answer again.
struct jwt_verifier::token_cache {
  struct entry {
    principal who;
    int64_t exp = 0;
    int64_t nbf = INT64_MIN;
  };
  std::mutex mutex;
  std::unordered_map<std::string, entry> tokens;
};

jwt_verifier::jwt_verifier(jwt_config cfg)
  : cfg_(std::move(cfg)), cache_(std::make_unique<token_cache>()) {
}

jwt_verifier::~jwt_verifier() = default;
jwt_verifier::jwt_verifier(jwt_verifier&&) noexcept = default;
jwt_verifier& jwt_verifier::operator=(jwt_verifier&&) noexcept = default;

void jwt_verifier::set_jwks(jwks keys) {
  keys_ = std::move(keys);
  if (cache_) {
    std::lock_guard<std::mutex> guard{cache_->mutex};
    cache_->tokens.clear();
  }
}

size_t jwt_verifier::cached_tokens() const {
  if (!cache_)
    return 0;
  std::lock_guard<std::mutex> guard{cache_->mutex};
  return cache_->tokens.size();
}

jwt_verifier::outcome jwt_verifier::verify(std::string_view token,
                                           int64_t now_s) const {
  auto leeway = std::max<int64_t>(0, cfg_.leeway_s);
  std::string digest;
  if (cache_ && token.size() <= max_token_bytes)
    digest = sha256(token);
  if (!digest.empty()) {
    std::lock_guard<std::mutex> guard{cache_->mutex};
    auto i = cache_->tokens.find(digest);
    if (i != cache_->tokens.end()) {
      outcome r;
      if (now_s - leeway > i->second.exp) {
        cache_->tokens.erase(i);
        r.error = "expired";
      } else if (now_s + leeway < i->second.nbf) {
        r.error = "not_yet_valid";
      } else {
        r.ok = true;
        r.who = i->second.who;
        r.expires_at = i->second.exp;
      }
      return r;
    }
  }
  int64_t nbf = INT64_MIN;
  auto r = verify_signed(token, now_s, &nbf);
  if (r.ok && !digest.empty()) {
    std::lock_guard<std::mutex> guard{cache_->mutex};
    auto& tokens = cache_->tokens;
    if (tokens.size() >= max_cached_tokens) {
      for (auto i = tokens.begin(); i != tokens.end();)
        i = now_s - leeway > i->second.exp ? tokens.erase(i) : std::next(i);
      if (tokens.size() >= max_cached_tokens)
        tokens.clear(); // only costs the next verifications their time
    }
    tokens.insert_or_assign(std::move(digest),
                            token_cache::entry{r.who, r.expires_at, nbf});
  }
  return r;
}

bool jwt_verifier::hs256_enabled() const noexcept {
  return cfg_.hs256_secret.size() >= min_hs256_secret_bytes;
}

jwt_verifier::outcome jwt_verifier::verify_signed(std::string_view token,
                                                  int64_t now_s,
                                                  int64_t* nbf_out) const {
  outcome r;
  auto fail = [&r](const char* why) {
    r.ok = false;
    r.error = why;
    return std::move(r);
  };
  if (token.size() > max_token_bytes)
    return fail("token_too_long");

  // Compact JWS: header.payload.signature, each base64url.
  auto d1 = token.find('.');
  auto d2 = d1 == std::string_view::npos ? d1 : token.find('.', d1 + 1);
  if (d2 == std::string_view::npos
      || token.find('.', d2 + 1) != std::string_view::npos)
    return fail("malformed");
  auto head64 = token.substr(0, d1);
  auto payload64 = token.substr(d1 + 1, d2 - d1 - 1);
  auto sig64 = token.substr(d2 + 1);
  std::string head_text, payload_text;
  if (head64.empty() || payload64.empty()
      || !b64url_decode(head64, head_text)
      || !b64url_decode(payload64, payload_text)
      || !std::all_of(sig64.begin(), sig64.end(), is_b64url))
    return fail("malformed");

  // The header, read before anything is trusted.
  auto head = parse_json(head_text);
  if (!head.is_object())
    return fail("malformed");
  auto alg = string_member(head, "alg");
  if (!alg || iequals(*alg, "none"))
    return fail("alg_none");
  jwt_alg_t alg_id;
  std::optional<jwks::key_type> key_type;
  if (*alg == "RS256") {
    alg_id = JWT_ALG_RS256;
    key_type = jwks::key_type::rsa;
  } else if (*alg == "ES256") {
    alg_id = JWT_ALG_ES256;
    key_type = jwks::key_type::ec_p256;
  } else if (*alg == "HS256") {
    alg_id = JWT_ALG_HS256;
  } else {
    return fail("alg_not_allowed");
  }
  // libjwt 1.10 refuses a typ other than "JWT" itself: say so plainly.
  if (head.contains("typ")) {
    auto typ = string_member(head, "typ");
    if (!typ || !iequals(*typ, "JWT"))
      return fail("bad_typ");
  }
  // No extension is understood (RFC 7515 4.1.11).
  if (head.contains("crit"))
    return fail("crit_unsupported");
  std::string kid;
  if (head.contains("kid")) {
    auto k = string_member(head, "kid");
    if (!k || k->empty() || k->size() > max_kid_bytes
        || has_control_chars(*k))
      return fail("malformed");
    kid = *k;
  }
  if (sig64.empty())
    return fail("bad_signature");
  auto claims = parse_json(payload_text);
  if (!claims.is_object())
    return fail("malformed");

  // The key: one made for the token's algorithm, never another kind.
  const std::string* key = nullptr;
  if (alg_id == JWT_ALG_HS256) {
    if (!hs256_enabled())
      return fail("alg_not_allowed");
    key = &cfg_.hs256_secret;
  } else {
    if (!keys_)
      return fail("no_jwks");
    auto k = keys_->find(kid, *key_type);
    if (!k) {
      if (kid.empty())
        return fail(keys_->keys().size() == 1 ? "wrong_key_type"
                                              : "missing_kid");
      if (keys_->has_kid(kid))
        return fail("wrong_key_type");
      r.unknown_kid = kid;
      return fail("unknown_kid");
    }
    key = &k->pem;
  }
  if (key->empty() || key->size() > static_cast<size_t>(INT_MAX))
    return fail("alg_not_allowed"); // never verify without a key

  // The signature, by libjwt (it needs a NUL-terminated token).
  std::string token_z(token);
  jwt_t* raw = nullptr;
  int rc = jwt_decode(&raw, token_z.c_str(),
                      reinterpret_cast<const unsigned char*>(key->data()),
                      static_cast<int>(key->size()));
  std::unique_ptr<jwt_t, jwt_deleter> decoded{raw};
  ERR_clear_error();
  if (rc != 0 || !decoded)
    return fail("bad_signature");
  // libjwt read the header with its own JSON parser: it must have seen the
  // same algorithm and kid as we did (no parser differential).
  auto lib_kid = jwt_get_header(decoded.get(), "kid");
  if (jwt_get_alg(decoded.get()) != alg_id
      || kid != (lib_kid ? std::string_view{lib_kid} : std::string_view{}))
    return fail("malformed");

  // The claims (the bytes the signature covers).
  auto iss = string_member(claims, "iss");
  if (cfg_.issuer.empty() || !iss || *iss != cfg_.issuer)
    return fail("wrong_issuer");
  bool aud_ok = false;
  if (auto aud = claims.find("aud"); aud != claims.end()) {
    if (aud->is_string())
      aud_ok = aud->get_ref<const std::string&>() == cfg_.audience;
    else if (aud->is_array())
      aud_ok = std::any_of(aud->begin(), aud->end(), [this](const json& a) {
        return a.is_string()
               && a.get_ref<const std::string&>() == cfg_.audience;
      });
  }
  if (cfg_.audience.empty() || !aud_ok)
    return fail("wrong_audience");
  auto leeway = std::max<int64_t>(0, cfg_.leeway_s);
  auto exp_it = claims.find("exp");
  auto exp = exp_it == claims.end() ? std::nullopt : numeric_date(*exp_it);
  if (!exp)
    return fail("missing_exp");
  // now > exp + leeway, without overflow.
  if (now_s - leeway > *exp)
    return fail("expired");
  if (auto nbf_it = claims.find("nbf"); nbf_it != claims.end()) {
    auto nbf = numeric_date(*nbf_it);
    if (!nbf)
      return fail("malformed");
    if (now_s + leeway < *nbf)
      return fail("not_yet_valid");
    *nbf_out = *nbf;
  }
  auto sub = string_member(claims, "sub");
  if (!sub || sub->empty())
    return fail("missing_sub");
  if (sub->size() > max_sub_bytes || has_control_chars(*sub))
    return fail("bad_sub");
  auto role_text = string_member(claims, cfg_.role_claim.c_str());
  auto granted = role_text ? parse_role(*role_text) : std::nullopt;
  if (!granted)
    return fail("bad_role");
  tenant_scope scope;
  auto tenants = claims.find(cfg_.tenants_claim);
  if (tenants == claims.end())
    return fail("bad_tenants");
  if (tenants->is_string()) {
    if (tenants->get_ref<const std::string&>() != "*")
      return fail("bad_tenants");
    scope.all = true;
  } else if (tenants->is_array() && !tenants->empty()) {
    for (auto& t : *tenants) {
      if (!t.is_string())
        return fail("bad_tenants");
      auto& id = t.get_ref<const std::string&>();
      if (id.empty() || id == "*" || id.size() > max_tenant_id_bytes
          || has_control_chars(id))
        return fail("bad_tenants");
      scope.tenants.push_back(id);
    }
    std::sort(scope.tenants.begin(), scope.tenants.end());
    scope.tenants.erase(std::unique(scope.tenants.begin(),
                                    scope.tenants.end()),
                        scope.tenants.end());
  } else {
    return fail("bad_tenants");
  }
  // An admin manages keys and reads the audit log of every tenant: an
  // admin limited to some tenants would be a way around that limit.
  if (*granted == role::admin && !scope.all)
    return fail("admin_needs_all_tenants");
  scope.unknown_tenant = *granted == role::admin;

  r.ok = true;
  r.who.name = *sub;
  r.who.kind = "jwt";
  r.who.granted = *granted;
  r.who.scope = std::move(scope);
  r.expires_at = *exp;
  return r;
}

} // namespace ces::auth
