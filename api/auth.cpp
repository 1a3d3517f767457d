#include "api/auth.hpp"

#include "storage/headers_json.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

namespace ces::auth {

namespace {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i]))
        != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool is_b64url(char c) noexcept {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
}

/// Standard base64 with padding (RFC 4648 section 4), as HTTP Basic uses:
/// the length a multiple of 4, at most two '=' at the end.
bool b64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0)
    return false;
  auto body = in;
  size_t pad = 0;
  while (!body.empty() && body.back() == '=') {
    body.remove_suffix(1);
    ++pad;
  }
  return pad <= 2 && storage::decode_base64(body, out);
}

} // namespace

const char* to_string(role r) noexcept {
  switch (r) {
    case role::none: return "none";
    case role::viewer: return "viewer";
    case role::operator_: return "operator";
    case role::admin: return "admin";
  }
  return "none";
}

std::optional<role> parse_role(std::string_view s) noexcept {
  if (s == "viewer")
    return role::viewer;
  if (s == "operator")
    return role::operator_;
  if (s == "admin")
    return role::admin;
  return std::nullopt;
}

requester to_requester(const principal& p) {
  requester r;
  r.principal = p.name;
  r.role = p.granted == role::none ? std::string{} : to_string(p.granted);
  r.scope = p.scope;
  return r;
}

bool may(const principal& p, api::route_kind route) {
  for (auto& spec : api::route_table())
    if (spec.kind == route)
      return static_cast<uint8_t>(p.granted)
             >= static_cast<uint8_t>(spec.min_role);
  return false;
}

credentials parse_authorization(std::string_view header) {
  credentials c;
  // Optional whitespace around the value (RFC 9110 5.5).
  while (!header.empty() && (header.front() == ' ' || header.front() == '\t'))
    header.remove_prefix(1);
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t'))
    header.remove_suffix(1);
  if (header.empty())
    return c;
  c.kind = credentials::scheme::malformed;
  auto sp = header.find(' ');
  if (sp == std::string_view::npos)
    return c;
  auto scheme = header.substr(0, sp);
  auto rest = header.substr(sp + 1);
  while (!rest.empty() && rest.front() == ' ')
    rest.remove_prefix(1);
  if (rest.empty() || rest.find_first_of(" \t,") != std::string_view::npos)
    return c;
  if (iequals(scheme, "Bearer")) {
    c.kind = credentials::scheme::bearer;
    c.secret = std::string(rest);
    return c;
  }
  if (iequals(scheme, "Basic")) {
    std::string decoded;
    if (!b64_decode(rest, decoded))
      return c;
    auto colon = decoded.find(':');
    if (colon == std::string::npos)
      return c;
    c.kind = credentials::scheme::basic;
    c.user = decoded.substr(0, colon);
    c.secret = decoded.substr(colon + 1);
    return c;
  }
  return c;
}

bool looks_like_key(std::string_view token) noexcept {
  if (token.size() != key_prefix.size() + 43
      || token.substr(0, key_prefix.size()) != key_prefix)
    return false;
  auto body = token.substr(key_prefix.size());
  return std::all_of(body.begin(), body.end(), is_b64url);
}

bool looks_like_jwt(std::string_view token) noexcept {
  int dots = 0;
  for (char c : token) {
    if (c == '.')
      ++dots;
    else if (!is_b64url(c))
      return false;
  }
  return dots == 2 && token.front() != '.';
}

token_bucket::token_bucket(double rate, double burst, clock::time_point now)
  : rate_(rate), burst_(burst), tokens_(burst), last_(now) {
}

void token_bucket::refill(clock::time_point now) {
  if (now <= last_)
    return;
  auto dt = std::chrono::duration<double>(now - last_).count();
  tokens_ = std::min(burst_, tokens_ + dt * rate_);
  last_ = now;
}

bool token_bucket::take(double n, clock::time_point now,
                        clock::duration* retry_after) {
  refill(now);
  if (tokens_ >= n) {
    tokens_ -= n;
    return true;
  }
  if (retry_after != nullptr) {
    if (n > burst_ || rate_ <= 0)
      *retry_after = clock::duration::zero();
    else
      *retry_after = std::chrono::duration_cast<clock::duration>(
        std::chrono::duration<double>((n - tokens_) / rate_));
  }
  return false;
}

double token_bucket::available(clock::time_point now) {
  refill(now);
  return tokens_;
}

keyed_buckets::keyed_buckets(double rate, double burst, size_t max_keys)
  : rate_(rate), burst_(burst), max_keys_(std::max<size_t>(1, max_keys)) {
}

bool keyed_buckets::take(const std::string& key, double n,
                         clock::time_point now, clock::duration* retry_after) {
  auto i = buckets_.find(key);
  if (i == buckets_.end()) {
    if (buckets_.size() >= max_keys_) {
      // Forget a full bucket (no state lost); else, among the 64 least
      // recently used, the one with the most tokens (the least state lost:
      // a drained bucket, e.g. an attacker's, is kept).
      auto victim = std::prev(lru_.end());
      double most = -1;
      int scanned = 0;
      for (auto j = lru_.rbegin(); j != lru_.rend() && scanned < 64;
           ++j, ++scanned) {
        auto left = buckets_.at(*j).bucket.available(now);
        if (left > most) {
          most = left;
          victim = std::prev(j.base());
        }
        if (left >= burst_)
          break;
      }
      buckets_.erase(*victim);
      lru_.erase(victim);
    }
    lru_.push_front(key);
    i = buckets_.emplace(key, entry{token_bucket{rate_, burst_, now},
                                    lru_.begin()})
          .first;
  } else {
    lru_.splice(lru_.begin(), lru_, i->second.pos);
  }
  return i->second.bucket.take(n, now, retry_after);
}

bool keyed_buckets::allowed(const std::string& key, clock::time_point now,
                            clock::duration* retry_after) {
  auto i = buckets_.find(key);
  if (i == buckets_.end())
    return true; // a new bucket is full
  auto& b = i->second.bucket;
  if (b.available(now) >= 1)
    return true;
  if (retry_after != nullptr)
    *retry_after = std::chrono::duration_cast<clock::duration>(
      std::chrono::duration<double>((1 - b.available(now)) / rate_));
  return false;
}

} // namespace ces::auth
