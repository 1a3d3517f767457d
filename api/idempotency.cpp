#include "api/idempotency.hpp"

#include <openssl/sha.h>

namespace ces::api {

bool takes_idempotency_key(route_kind k) noexcept {
  return k == route_kind::replay || k == route_kind::replays_create
         || k == route_kind::dlq_retry || k == route_kind::dlq_discard
         || k == route_kind::dlq_bulk_retry
         || k == route_kind::dlq_bulk_discard;
}

bool valid_idempotency_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > 255 || key.front() == ' '
      || key.back() == ' ')
    return false;
  for (unsigned char c : key)
    if (c < 0x20 || c > 0x7e)
      return false;
  return true;
}

std::string request_path(const parsed_request& r) {
  for (auto& spec : route_table()) {
    if (spec.kind != r.kind)
      continue;
    std::string out;
    std::string_view pattern = spec.pattern;
    size_t pos = 0;
    while (pos < pattern.size()) {
      auto open = pattern.find('{', pos);
      if (open == std::string_view::npos) {
        out.append(pattern.substr(pos));
        break;
      }
      out.append(pattern.substr(pos, open - pos));
      auto close = pattern.find('}', open);
      auto name = pattern.substr(open + 1, close - open - 1);
      out += name == "id" ? std::to_string(r.id) : r.name;
      pos = close + 1;
    }
    return out;
  }
  return {};
}

std::string sha256_hex(std::string_view text) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(),
         digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto b : digest) {
    out += hex[b >> 4];
    out += hex[b & 15];
  }
  return out;
}

std::string request_fingerprint(std::string_view method,
                                const parsed_request& r) {
  std::string out(method);
  out += ' ';
  out += request_path(r);
  out += ' ';
  out += sha256_hex(r.body);
  return out;
}

idempotency_settlement settle(int status, std::string_view body) noexcept {
  auto code_is = [&](std::string_view code) {
    // error_json() writes {"error":"<code>",...}.
    std::string_view prefix = "{\"error\":\"";
    return body.substr(0, prefix.size()) == prefix
           && body.substr(prefix.size(), code.size()) == code
           && body.substr(prefix.size() + code.size(), 1) == "\"";
  };
  if (status == 504
      || (status == 503 && (code_is("upstream_timeout") || code_is("dropped"))))
    return idempotency_settlement::keep;
  if (status == 408 || status == 409 || status == 429 || status >= 500)
    return idempotency_settlement::release;
  return idempotency_settlement::complete;
}

} // namespace ces::api
