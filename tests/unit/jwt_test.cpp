// JWT verification and JWKS parsing (api/jwt.cpp): keys made with OpenSSL,
// tokens signed with libjwt, checked by ces::auth::jwt_verifier.
#include "api/jwt.hpp"
#include "tests/support/jwt_keys.hpp"

#include <catch2/catch.hpp>

using namespace ces;
using namespace ces::auth;
using ces::test::b64url;
using ces::test::sign;
using json = nlohmann::json;

namespace {

constexpr int64_t now = 1'700'000'000;

// Key generation is the slow part: once per test binary.
const test::test_key& rsa1() {
  static auto k = test::rsa_key("rsa-1");
  return k;
}
const test::test_key& rsa2() {
  static auto k = test::rsa_key("rsa-2");
  return k;
}
const test::test_key& ec1() {
  static auto k = test::ec_key("ec-1");
  return k;
}

const std::string secret = "0123456789abcdef0123456789abcdef-hs";

jwt_config config(std::string hs256 = secret) {
  jwt_config c;
  c.issuer = "https://idp.example";
  c.audience = "crm-events-sink";
  c.hs256_secret = std::move(hs256);
  return c;
}

json claims() {
  return {{"iss", "https://idp.example"},
          {"aud", "crm-events-sink"},
          {"sub", "alice"},
          {"iat", now - 10},
          {"exp", now + 300},
          {"crm_role", "operator"},
          {"crm_tenants", {"t2", "t1", "t2"}}};
}

jwks keyset(const std::vector<const test::test_key*>& keys) {
  std::string err;
  auto set = jwks::parse(test::jwks_json(keys), &err);
  INFO(err);
  REQUIRE(set);
  return *set;
}

jwt_verifier verifier(jwt_config cfg = config()) {
  jwt_verifier v{std::move(cfg)};
  v.set_jwks(keyset({&rsa1(), &ec1()}));
  return v;
}

std::string rs256(const json& c, const std::string& kid = "rsa-1") {
  return sign(JWT_ALG_RS256, rsa1().private_pem, kid, c);
}

std::string es256(const json& c, const std::string& kid = "ec-1") {
  return sign(JWT_ALG_ES256, ec1().private_pem, kid, c);
}

/// A token with this header and payload and signature (all JSON / bytes).
std::string hand_made(const json& header, const json& payload,
                      std::string_view sig = {}) {
  return b64url(header.dump()) + "." + b64url(payload.dump()) + "."
         + b64url(sig);
}

/// `j` with the members of `patch` set.
json patched(json j, const json& patch) {
  j.update(patch);
  return j;
}

std::string segment(const std::string& token, int i) {
  auto d1 = token.find('.');
  auto d2 = token.find('.', d1 + 1);
  if (i == 0)
    return token.substr(0, d1);
  if (i == 1)
    return token.substr(d1 + 1, d2 - d1 - 1);
  return token.substr(d2 + 1);
}

std::string refused(const jwt_verifier& v, const std::string& token,
                    int64_t at = now) {
  auto r = v.verify(token, at);
  CHECK_FALSE(r.ok);
  CHECK(r.who.name.empty());
  return r.error;
}

} // namespace

TEST_CASE("valid RS256, ES256 and HS256 tokens give the claims' principal",
          "[jwt]") {
  auto v = verifier();
  for (auto token : {rs256(claims()), es256(claims()),
                     sign(JWT_ALG_HS256, secret, "", claims())}) {
    auto r = v.verify(token, now);
    INFO(r.error);
    REQUIRE(r.ok);
    CHECK(r.error.empty());
    CHECK(r.who.name == "alice");
    CHECK(r.who.kind == "jwt");
    CHECK(r.who.granted == role::operator_);
    CHECK_FALSE(r.who.scope.all);
    CHECK(r.who.scope.tenants == std::vector<std::string>{"t1", "t2"});
    CHECK_FALSE(r.who.scope.unknown_tenant);
    CHECK(r.expires_at == now + 300);
  }
}

TEST_CASE("ES256 signatures are JOSE r||s (64 bytes), as IdPs send them",
          "[jwt]") {
  auto s64 = segment(es256(claims()), 2);
  CHECK(s64.size() == 86); // 64 bytes in base64url without padding
  CHECK(verifier().verify(es256(claims()), now).ok);
}

TEST_CASE("alg none, absent alg and other algorithms are refused", "[jwt]") {
  auto v = verifier();
  CHECK(refused(v, hand_made({{"alg", "none"}, {"typ", "JWT"}}, claims()))
        == "alg_none");
  CHECK(refused(v, hand_made({{"alg", "None"}}, claims())) == "alg_none");
  CHECK(refused(v, hand_made({{"typ", "JWT"}}, claims())) == "alg_none");
  CHECK(refused(v, hand_made({{"alg", 256}}, claims())) == "alg_none");
  // alg none with a signature appended: still none.
  CHECK(refused(v, hand_made({{"alg", "none"}}, claims(), "x")) == "alg_none");
  // Signed properly, but with an algorithm not on the list.
  CHECK(refused(v, sign(JWT_ALG_RS512, rsa1().private_pem, "rsa-1", claims()))
        == "alg_not_allowed");
  CHECK(refused(v, sign(JWT_ALG_HS512, secret, "", claims()))
        == "alg_not_allowed");
  CHECK(refused(v, hand_made({{"alg", "PS256"}, {"kid", "rsa-1"}}, claims(),
                             "sig"))
        == "alg_not_allowed");
}

TEST_CASE("HS256 signed with the RSA public key PEM is refused (alg "
          "confusion)",
          "[jwt]") {
  // The exact PEM the verifier holds for rsa-1, used as the HMAC secret.
  auto set = keyset({&rsa1(), &ec1()});
  auto pem = set.find("rsa-1", jwks::key_type::rsa)->pem;
  REQUIRE(pem.find("BEGIN PUBLIC KEY") != std::string::npos);
  for (auto kid : {std::string{"rsa-1"}, std::string{}}) {
    auto forged = sign(JWT_ALG_HS256, pem, kid, claims());
    SECTION("no HS256 secret configured" + kid) {
      jwt_verifier v{config("")};
      v.set_jwks(set);
      CHECK_FALSE(v.hs256_enabled());
      CHECK(refused(v, forged) == "alg_not_allowed");
    }
    SECTION("another HS256 secret configured" + kid) {
      jwt_verifier v{config()};
      v.set_jwks(set);
      CHECK(v.hs256_enabled());
      CHECK(refused(v, forged) == "bad_signature");
    }
  }
  SECTION("the same forgery with the real public key file contents") {
    jwt_verifier v{config()};
    v.set_jwks(set);
    CHECK(refused(v, sign(JWT_ALG_HS256, rsa1().public_pem, "rsa-1",
                          claims()))
          == "bad_signature");
  }
}

TEST_CASE("a too short HS256 secret disables HS256", "[jwt]") {
  std::string short_secret(jwt_verifier::min_hs256_secret_bytes - 1, 'k');
  jwt_verifier v{config(short_secret)};
  CHECK_FALSE(v.hs256_enabled());
  CHECK(refused(v, sign(JWT_ALG_HS256, short_secret, "", claims()))
        == "alg_not_allowed");
}

TEST_CASE("a token is checked only with a key of its algorithm's type",
          "[jwt]") {
  auto v = verifier();
  // RS256 naming the EC key, and ES256 naming the RSA key.
  CHECK(refused(v, rs256(claims(), "ec-1")) == "wrong_key_type");
  CHECK(refused(v, es256(claims(), "rsa-1")) == "wrong_key_type");
  // Without kid, a set of two keys is ambiguous.
  CHECK(refused(v, rs256(claims(), "")) == "missing_kid");
}

TEST_CASE("a token without kid uses the set's only key, of its type",
          "[jwt]") {
  jwt_verifier v{config()};
  auto only = test::rsa_key("");
  v.set_jwks(keyset({&only}));
  CHECK(v.verify(sign(JWT_ALG_RS256, only.private_pem, "", claims()), now)
          .ok);
  CHECK(refused(v, sign(JWT_ALG_RS256, only.private_pem, "k", claims()))
        == "unknown_kid");
  CHECK(refused(v, es256(claims(), "")) == "wrong_key_type");
}

TEST_CASE("an unknown kid says which, so the caller may refresh", "[jwt]") {
  auto v = verifier();
  auto r = v.verify(sign(JWT_ALG_RS256, rsa2().private_pem, "rsa-2",
                         claims()),
                    now);
  CHECK_FALSE(r.ok);
  CHECK(r.error == "unknown_kid");
  CHECK(r.unknown_kid == "rsa-2");
  // Other failures leave unknown_kid empty.
  auto bad = v.verify(rs256(claims(), "ec-1"), now);
  CHECK(bad.unknown_kid.empty());
}

TEST_CASE("no key set yet: no_jwks", "[jwt]") {
  jwt_verifier v{config()};
  CHECK_FALSE(v.has_jwks());
  CHECK(refused(v, rs256(claims())) == "no_jwks");
  // HS256 does not need one.
  CHECK(v.verify(sign(JWT_ALG_HS256, secret, "", claims()), now).ok);
}

TEST_CASE("a rotated key set: the new kid verifies, the removed one not",
          "[jwt]") {
  auto v = verifier();
  auto old_token = rs256(claims(), "rsa-1");
  auto new_token = sign(JWT_ALG_RS256, rsa2().private_pem, "rsa-2", claims());
  CHECK(v.verify(old_token, now).ok);
  CHECK(v.verify(new_token, now).error == "unknown_kid");
  v.set_jwks(keyset({&rsa2(), &ec1()}));
  CHECK(v.verify(new_token, now).ok);
  auto r = v.verify(old_token, now);
  CHECK(r.error == "unknown_kid");
  CHECK(r.unknown_kid == "rsa-1");
}

TEST_CASE("tampered tokens are refused", "[jwt]") {
  auto v = verifier();
  for (auto token : {rs256(claims()), es256(claims()),
                     sign(JWT_ALG_HS256, secret, "", claims())}) {
    auto c = claims();
    c["crm_role"] = "admin";
    c["crm_tenants"] = "*";
    auto tampered = segment(token, 0) + "." + b64url(c.dump()) + "."
                    + segment(token, 2);
    CHECK(refused(v, tampered) == "bad_signature");
    // Signature of another token.
    auto other = claims();
    other["sub"] = "bob";
    auto swapped = segment(token, 0) + "." + segment(token, 1) + "."
                   + segment(rs256(other), 2);
    CHECK(refused(v, swapped) == "bad_signature");
    // No signature.
    CHECK(refused(v, segment(token, 0) + "." + segment(token, 1) + ".")
          == "bad_signature");
  }
  // Signed by a key that is not the one its kid names.
  CHECK(refused(v, sign(JWT_ALG_RS256, rsa2().private_pem, "rsa-1",
                        claims()))
        == "bad_signature");
  // Keys the token brings along (jwk, jku, x5u) are never used.
  CHECK(refused(v, sign(JWT_ALG_RS256, rsa2().private_pem, "rsa-1",
                        claims(),
                        {{"jwk", rsa2().jwk},
                         {"jku", "https://evil.example/jwks.json"},
                         {"x5u", "https://evil.example/cert.pem"}}))
        == "bad_signature");
}

TEST_CASE("malformed tokens are refused", "[jwt]") {
  auto v = verifier();
  auto good = rs256(claims());
  CHECK(refused(v, "") == "malformed");
  CHECK(refused(v, "abc") == "malformed");
  CHECK(refused(v, "a.b") == "malformed");
  CHECK(refused(v, good + ".x") == "malformed");
  CHECK(refused(v, "." + segment(good, 1) + "." + segment(good, 2))
        == "malformed");
  CHECK(refused(v, "e30=." + segment(good, 1) + "." + segment(good, 2))
        == "malformed");
  CHECK(refused(v, b64url("not json") + "." + segment(good, 1) + ".x")
        == "malformed");
  CHECK(refused(v, hand_made({{"alg", "RS256"}, {"kid", 7}}, claims(), "s"))
        == "malformed");
  CHECK(refused(v, hand_made({{"alg", "RS256"}, {"kid", "a\nb"}}, claims(),
                             "s"))
        == "malformed");
  CHECK(refused(v, hand_made({{"alg", "RS256"}, {"kid", ""}}, claims(), "s"))
        == "malformed");
  CHECK(refused(v, hand_made({{"alg", "RS256"},
                              {"kid", std::string(257, 'k')}},
                             claims(), "s"))
        == "malformed");
  CHECK(refused(v, segment(good, 0) + "." + b64url("[1]") + ".sig")
        == "malformed");
  CHECK(refused(v, std::string(jwt_verifier::max_token_bytes + 1, 'a'))
        == "token_too_long");
  CHECK(refused(v, hand_made({{"alg", "RS256"}, {"kid", "rsa-1"},
                              {"typ", "at+jwt"}},
                             claims(), "s"))
        == "bad_typ");
  CHECK(refused(v, hand_made({{"alg", "RS256"}, {"kid", "rsa-1"},
                              {"crit", {"exp"}}},
                             claims(), "s"))
        == "crit_unsupported");
}

TEST_CASE("issuer and audience must match", "[jwt]") {
  auto v = verifier();
  auto c = claims();
  c["iss"] = "https://evil.example";
  CHECK(refused(v, rs256(c)) == "wrong_issuer");
  c.erase("iss");
  CHECK(refused(v, rs256(c)) == "wrong_issuer");
  c = claims();
  c["aud"] = "someone-else";
  CHECK(refused(v, rs256(c)) == "wrong_audience");
  c["aud"] = {"someone-else", "another"};
  CHECK(refused(v, rs256(c)) == "wrong_audience");
  c.erase("aud");
  CHECK(refused(v, rs256(c)) == "wrong_audience");
  c["aud"] = {"someone-else", "crm-events-sink"};
  CHECK(v.verify(rs256(c), now).ok);
  // An empty configured issuer or audience accepts nothing.
  auto cfg = config();
  cfg.issuer.clear();
  CHECK(refused(verifier(cfg), rs256(claims())) == "wrong_issuer");
  cfg = config();
  cfg.audience.clear();
  c = claims();
  c["aud"] = "";
  CHECK(refused(verifier(cfg), rs256(c)) == "wrong_audience");
}

TEST_CASE("exp is required and honoured with the leeway; so is nbf", "[jwt]") {
  auto v = verifier(); // leeway 30 s
  auto c = claims();
  c["exp"] = now - 31;
  CHECK(refused(v, rs256(c)) == "expired");
  c["exp"] = now - 30;
  CHECK(v.verify(rs256(c), now).ok);
  c["exp"] = now - 29.5; // fractional NumericDate
  CHECK(v.verify(rs256(c), now).ok);
  c.erase("exp");
  CHECK(refused(v, rs256(c)) == "missing_exp");
  c["exp"] = "tomorrow";
  CHECK(refused(v, rs256(c)) == "missing_exp");
  c = claims();
  c["nbf"] = now + 31;
  CHECK(refused(v, rs256(c)) == "not_yet_valid");
  c["nbf"] = now + 30;
  CHECK(v.verify(rs256(c), now).ok);
  c["nbf"] = "soon";
  CHECK(refused(v, rs256(c)) == "malformed");
  // The same token, later.
  auto token = rs256(claims());
  CHECK(v.verify(token, now + 300 + 30).ok);
  CHECK(refused(v, token, now + 300 + 31) == "expired");
  // No leeway configured.
  auto cfg = config();
  cfg.leeway_s = 0;
  c = claims();
  c["exp"] = now - 1;
  CHECK(refused(verifier(cfg), rs256(c)) == "expired");
}

TEST_CASE("sub, role and tenants claims are required and checked", "[jwt]") {
  auto v = verifier();
  auto c = claims();
  c.erase("sub");
  CHECK(refused(v, rs256(c)) == "missing_sub");
  c["sub"] = "";
  CHECK(refused(v, rs256(c)) == "missing_sub");
  c["sub"] = 42;
  CHECK(refused(v, rs256(c)) == "missing_sub");
  c["sub"] = "bad\nname";
  CHECK(refused(v, rs256(c)) == "bad_sub");
  c["sub"] = std::string(257, 's');
  CHECK(refused(v, rs256(c)) == "bad_sub");

  c = claims();
  c.erase("crm_role");
  CHECK(refused(v, rs256(c)) == "bad_role");
  for (json bad : {json("root"), json("none"), json("Admin"), json(3),
                   json::array({"admin"})}) {
    c["crm_role"] = bad;
    CHECK(refused(v, rs256(c)) == "bad_role");
  }

  c = claims();
  c.erase("crm_tenants");
  CHECK(refused(v, rs256(c)) == "bad_tenants");
  for (json bad : {json("t1"), json(""), json::array(), json::array({""}),
                   json::array({"t1", 2}), json::array({"*"}), json(nullptr),
                   json::object()}) {
    c["crm_tenants"] = bad;
    INFO(bad.dump());
    CHECK(refused(v, rs256(c)) == "bad_tenants");
  }

  SECTION("tenants \"*\" and admin") {
    c = claims();
    c["crm_tenants"] = "*";
    c["crm_role"] = "admin";
    auto r = v.verify(rs256(c), now);
    REQUIRE(r.ok);
    CHECK(r.who.granted == role::admin);
    CHECK(r.who.scope.all);
    CHECK(r.who.scope.tenants.empty());
    CHECK(r.who.scope.unknown_tenant);
  }
  SECTION("an admin of some tenants only is refused") {
    // Admins manage every tenant's keys: a tenant-limited admin could give
    // itself every tenant.
    c = claims();
    c["crm_tenants"] = {"acme"};
    c["crm_role"] = "admin";
    CHECK(refused(v, rs256(c)) == "admin_needs_all_tenants");
  }
  SECTION("tenant ids with control characters are refused") {
    c = claims();
    c["crm_tenants"] = {"ac\tme"};
    CHECK(refused(v, rs256(c)) == "bad_tenants");
  }
  SECTION("viewer of one tenant") {
    c = claims();
    c["crm_tenants"] = {"acme"};
    c["crm_role"] = "viewer";
    auto r = v.verify(rs256(c), now);
    REQUIRE(r.ok);
    CHECK(r.who.granted == role::viewer);
    CHECK(r.who.scope.tenants == std::vector<std::string>{"acme"});
    CHECK_FALSE(r.who.scope.unknown_tenant);
    CHECK(r.who.scope.sees("acme"));
    CHECK_FALSE(r.who.scope.sees("other"));
  }
  SECTION("configured claim names") {
    auto cfg = config();
    cfg.role_claim = "role";
    cfg.tenants_claim = "tenants";
    c = claims();
    c["role"] = "operator";
    c["tenants"] = {"x"};
    c["crm_role"] = "viewer";
    auto r = verifier(cfg).verify(rs256(c), now);
    REQUIRE(r.ok);
    CHECK(r.who.granted == role::operator_); // not crm_role's viewer
    CHECK(r.who.scope.tenants == std::vector<std::string>{"x"});
  }
}

TEST_CASE("errors never hold the token or the secret", "[jwt]") {
  auto v = verifier();
  auto c = claims();
  c["iss"] = "https://evil.example";
  for (auto token : {rs256(c), sign(JWT_ALG_HS256, secret, "", c),
                     sign(JWT_ALG_HS256, "x" + secret, "", claims())}) {
    auto r = v.verify(token, now);
    CHECK_FALSE(r.ok);
    CHECK(r.error.size() < 32);
    CHECK(r.error.find(segment(token, 2)) == std::string::npos);
    CHECK(r.error.find(secret) == std::string::npos);
  }
}

TEST_CASE("JWKS documents: errors, skipped keys, bounds", "[jwks]") {
  std::string err;
  CHECK_FALSE(jwks::parse("not json", &err));
  CHECK(err.find("not JSON") != std::string::npos);
  CHECK_FALSE(jwks::parse("[]", &err));
  CHECK_FALSE(jwks::parse("{}", &err));
  CHECK(err.find("keys") != std::string::npos);
  CHECK_FALSE(jwks::parse(R"({"keys": []})", &err));
  CHECK(err.find("no usable key") != std::string::npos);

  auto rsa = rsa1().jwk;
  auto ec = ec1().jwk;
  std::vector<json> unsupported = {
    {{"kty", "oct"}, {"k", "c2VjcmV0"}, {"kid", "h"}},
    {{"kty", "OKP"}, {"crv", "Ed25519"}, {"x", "AAAA"}, {"kid", "o"}},
    patched(rsa, {{"use", "enc"}}),
    patched(rsa, {{"alg", "RS512"}}),
    patched(rsa, {{"alg", "HS256"}}),
    patched(rsa, {{"n", "!!"}}),
    patched(rsa, {{"kid", 5}}),
    patched(ec, {{"crv", "P-384"}}),
    patched(ec, {{"alg", "ES384"}}),
    patched(ec, {{"x", b64url(std::string(31, 'a'))}}),
    // A point that is not on the curve.
    patched(ec, {{"y", b64url(std::string(32, '\x01'))}}),
    "not an object",
  };
  // RSA below 2048 bits.
  auto weak = test::rsa_key("weak", 1024);
  unsupported.push_back(weak.jwk);
  json doc = {{"keys", unsupported}};
  CHECK_FALSE(jwks::parse(doc.dump(), &err));
  CHECK(err.find("no usable key") != std::string::npos);
  CHECK(err.find(std::to_string(unsupported.size()) + " skipped")
        != std::string::npos);

  // The same with one good key: usable, the rest counted.
  doc["keys"].push_back(rsa);
  auto set = jwks::parse(doc.dump(), &err);
  REQUIRE(set);
  CHECK(set->keys().size() == 1);
  CHECK(set->skipped() == unsupported.size());
  CHECK(set->keys()[0].kid == "rsa-1");
  CHECK(set->keys()[0].type == jwks::key_type::rsa);

  // alg and use may be absent; a duplicate kid+type is skipped; private
  // members are ignored.
  auto bare = rsa;
  bare.erase("alg");
  bare.erase("use");
  bare["d"] = "c2VjcmV0";
  auto bare_ec = ec;
  bare_ec.erase("alg");
  set = jwks::parse(json{{"keys", {bare, bare_ec, rsa}}}.dump(), &err);
  REQUIRE(set);
  CHECK(set->keys().size() == 2);
  CHECK(set->skipped() == 1);
  CHECK(set->keys()[0].pem.find("BEGIN PUBLIC KEY") != std::string::npos);
  CHECK(set->find("ec-1", jwks::key_type::ec_p256));
  CHECK_FALSE(set->find("ec-1", jwks::key_type::rsa));
  CHECK(set->has_kid("ec-1"));
  CHECK_FALSE(set->has_kid("nope"));

  // Bounds.
  json many = {{"keys", json::array()}};
  for (size_t i = 0; i <= jwks::max_keys; ++i)
    many["keys"].push_back(patched(ec, {{"kid", std::to_string(i)}}));
  CHECK_FALSE(jwks::parse(many.dump(), &err));
  CHECK(err.find("more than 100") != std::string::npos);
  many["keys"].erase(0);
  set = jwks::parse(many.dump(), &err);
  REQUIRE(set);
  CHECK(set->keys().size() == jwks::max_keys);
  std::string huge = R"({"keys": [], "pad": ")"
                     + std::string(jwks::max_document_bytes, 'x') + "\"}";
  CHECK_FALSE(jwks::parse(huge, &err));
  CHECK(err.find("larger than") != std::string::npos);
}

TEST_CASE("a key parsed from the JWKS verifies tokens of its private key",
          "[jwks]") {
  // The PEM built from n/e (x/y) is the key OpenSSL derives from the
  // private key.
  auto set = keyset({&rsa1(), &ec1()});
  CHECK(set.find("rsa-1", jwks::key_type::rsa)->pem == rsa1().public_pem);
  CHECK(set.find("ec-1", jwks::key_type::ec_p256)->pem == ec1().public_pem);
}

TEST_CASE("verified tokens are remembered, exp and nbf checked again",
          "[jwt]") {
  auto v = verifier();
  CHECK(v.cached_tokens() == 0);
  auto token = rs256(claims());
  REQUIRE(v.verify(token, now).ok);
  CHECK(v.cached_tokens() == 1);
  // Refused tokens are not remembered.
  CHECK_FALSE(v.verify(rs256(claims(), "ec-1"), now).ok);
  CHECK(v.cached_tokens() == 1);
  auto again = v.verify(token, now + 1);
  REQUIRE(again.ok);
  CHECK(again.who.name == "alice");
  CHECK(again.who.granted == role::operator_);
  CHECK(again.who.scope.tenants == std::vector<std::string>{"t1", "t2"});
  CHECK(again.expires_at == now + 300);
  // nbf is checked again (a clock that went back).
  auto c = claims();
  c["nbf"] = now;
  auto with_nbf = rs256(c);
  REQUIRE(v.verify(with_nbf, now).ok);
  CHECK(refused(v, with_nbf, now - 31) == "not_yet_valid");
  // Expired: refused and forgotten.
  CHECK(refused(v, token, now + 331) == "expired");
  CHECK(v.cached_tokens() == 1);
  // A rotation forgets them all.
  v.set_jwks(keyset({&rsa2()}));
  CHECK(v.cached_tokens() == 0);
  CHECK(refused(v, with_nbf) == "unknown_kid");
}

TEST_CASE("the remembered tokens are bounded", "[jwt]") {
  jwt_verifier v{config()};
  auto c = claims();
  c["exp"] = now + 10;
  auto first = sign(JWT_ALG_HS256, secret, "", c);
  REQUIRE(v.verify(first, now).ok);
  for (size_t i = 1; i < jwt_verifier::max_cached_tokens; ++i) {
    c["sub"] = "user" + std::to_string(i);
    c["exp"] = now + 1000;
    REQUIRE(v.verify(sign(JWT_ALG_HS256, secret, "", c), now).ok);
  }
  CHECK(v.cached_tokens() == jwt_verifier::max_cached_tokens);
  // Full: the expired one (at now + 100) goes first.
  c["sub"] = "late";
  REQUIRE(v.verify(sign(JWT_ALG_HS256, secret, "", c), now + 100).ok);
  CHECK(v.cached_tokens() == jwt_verifier::max_cached_tokens);
  CHECK(refused(v, first, now + 100) == "expired");
  // Full of live tokens: all forgotten, the new one kept.
  c["sub"] = "later";
  REQUIRE(v.verify(sign(JWT_ALG_HS256, secret, "", c), now + 100).ok);
  CHECK(v.cached_tokens() == 1);
  // A moved verifier keeps working.
  jwt_verifier moved = std::move(v);
  CHECK(moved.verify(first, now).ok);
}
