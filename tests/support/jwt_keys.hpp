// Test keys and tokens for api/jwt.hpp: RSA 2048 and EC P-256 key pairs made
// with OpenSSL 3, their JWKs, and tokens signed with libjwt. Header-only; the
// test links OpenSSL::Crypto, PkgConfig::JWT and nlohmann_json.
#pragma once

#include <jwt.h>
#include <nlohmann/json.hpp>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace ces::test {

/// base64url without padding.
inline std::string b64url(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  auto n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                           reinterpret_cast<const unsigned char*>(bytes.data()),
                           static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  while (!out.empty() && out.back() == '=')
    out.pop_back();
  for (auto& c : out)
    c = c == '+' ? '-' : c == '/' ? '_' : c;
  return out;
}

/// A key pair and its public JWK.
struct test_key {
  std::string kid;
  std::string private_pem;
  std::string public_pem;
  nlohmann::json jwk;
};

namespace detail {

inline std::string pem_of(EVP_PKEY* pkey, bool priv) {
  std::unique_ptr<BIO, decltype(&BIO_free)> mem{BIO_new(BIO_s_mem()),
                                                &BIO_free};
  int ok = priv ? PEM_write_bio_PrivateKey(mem.get(), pkey, nullptr, nullptr,
                                           0, nullptr, nullptr)
                : PEM_write_bio_PUBKEY(mem.get(), pkey);
  if (ok != 1)
    throw std::runtime_error("PEM_write failed");
  char* data = nullptr;
  auto len = BIO_get_mem_data(mem.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

/// Big-endian bytes of a BIGNUM parameter, left-padded to `pad` bytes (0:
/// minimal).
inline std::string bn_param(EVP_PKEY* pkey, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
    throw std::runtime_error(std::string("no parameter ") + name);
  std::string out(static_cast<size_t>(pad ? pad : BN_num_bytes(bn)), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(out.data()),
               static_cast<int>(out.size()));
  BN_free(bn);
  return out;
}

inline test_key make(EVP_PKEY* pkey, std::string kid) {
  if (!pkey)
    throw std::runtime_error("key generation failed");
  std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> owned{pkey,
                                                             &EVP_PKEY_free};
  test_key k;
  k.kid = std::move(kid);
  k.private_pem = pem_of(pkey, true);
  k.public_pem = pem_of(pkey, false);
  if (EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA) {
    k.jwk = {{"kty", "RSA"},
             {"use", "sig"},
             {"alg", "RS256"},
             {"n", b64url(bn_param(pkey, OSSL_PKEY_PARAM_RSA_N))},
             {"e", b64url(bn_param(pkey, OSSL_PKEY_PARAM_RSA_E))}};
  } else {
    k.jwk = {{"kty", "EC"},
             {"crv", "P-256"},
             {"use", "sig"},
             {"alg", "ES256"},
             {"x", b64url(bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, 32))},
             {"y", b64url(bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, 32))}};
  }
  if (!k.kid.empty())
    k.jwk["kid"] = k.kid;
  return k;
}

} // namespace detail

inline test_key rsa_key(std::string kid, size_t bits = 2048) {
  return detail::make(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits),
                      std::move(kid));
}

inline test_key ec_key(std::string kid) {
  return detail::make(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"),
                      std::move(kid));
}

/// {"keys": [jwk...]} of these keys.
inline std::string jwks_json(const std::vector<const test_key*>& keys) {
  nlohmann::json doc = {{"keys", nlohmann::json::array()}};
  for (auto* k : keys)
    doc["keys"].push_back(k->jwk);
  return doc.dump();
}

/// A token signed by libjwt: `alg` with `key` (a private PEM, or the HMAC
/// secret), header kid `kid` (none if empty) and the members of `header`,
/// claims `claims` (a JSON object).
inline std::string sign(jwt_alg_t alg, std::string_view key,
                        const std::string& kid, const nlohmann::json& claims,
                        const nlohmann::json& header = {}) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0)
    throw std::runtime_error("jwt_new failed");
  std::unique_ptr<jwt_t, decltype(&jwt_free)> j{raw, &jwt_free};
  if (jwt_add_grants_json(j.get(), claims.dump().c_str()) != 0)
    throw std::runtime_error("jwt_add_grants_json failed");
  if (!kid.empty() && jwt_add_header(j.get(), "kid", kid.c_str()) != 0)
    throw std::runtime_error("jwt_add_header failed");
  if (header.is_object()
      && jwt_add_headers_json(j.get(), header.dump().c_str()) != 0)
    throw std::runtime_error("jwt_add_headers_json failed");
  if (jwt_set_alg(j.get(), alg,
                  reinterpret_cast<const unsigned char*>(key.data()),
                  static_cast<int>(key.size()))
      != 0)
    throw std::runtime_error("jwt_set_alg failed");
  char* out = jwt_encode_str(j.get());
  if (!out)
    throw std::runtime_error("jwt_encode_str failed");
  std::string token(out);
  std::free(out);
  return token;
}

} // namespace ces::test
