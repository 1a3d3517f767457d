// What is a secret, and how settings are shown without them. No CAF, no
// libpq in this header (libpq is used inside mask.cpp).
//
// - DATABASE_URL: parsed with libpq's own parser (PQconninfoParse); every
//   option libpq marks as a password (dispchar '*': password, sslpassword) is
//   shown as ***, and a string libpq cannot parse is not shown at all.
// - librdkafka properties: a property whose name contains password, secret,
//   jaas, key, token, credential or oauthbearer (case-insensitive) is shown
//   as key=***, and its value never goes into an error message.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ces {

/// What mask_database_url() shows for a string database_url_problem()
/// refuses.
inline constexpr const char* unparseable_database_url
  = "(invalid libpq connection string; not shown)";

/// True for a librdkafka property whose value must never be shown: its name
/// contains password, secret, jaas, key, token, credential or oauthbearer
/// (case-insensitive).
bool secret_property(std::string_view key);

/// "key=value" as given, or "key=***" when secret_property(key); "***" for
/// an item without "=" (perhaps the tail of a value cut at a comma).
std::string mask_property(std::string_view item);

/// `text` with every non-empty value of a secret property among `properties`
/// ("key=value" items) replaced by "***": for error texts a library built
/// from them (defence in depth: librdkafka is not known to quote them).
std::string scrub_properties(std::string text,
                             const std::vector<std::string>& properties);

/// The connection string as libpq reads it, every password option (libpq's
/// dispchar '*': password, sslpassword) replaced by "***". A URI is rebuilt
/// as a URI from libpq's parsed options, a key=value string as key=value
/// (in libpq's order of options); a string database_url_problem() refuses
/// gives unparseable_database_url.
std::string mask_database_url(const std::string& url);

/// Why libpq would refuse `url` (parse error, or a port that is not a
/// number), or "" when it parses. The text never quotes the string or any
/// part of it: libpq's own message is kept with every quoted fragment
/// replaced by "***". Also refuses, in URI form, a host or database name
/// with '@': the sign of an unencoded '@' or '/' in the password, which
/// would otherwise be shown (and sent) as a host or database name.
std::string database_url_problem(const std::string& url);

/// An http(s) URL shown without what may be secret in it (user info, path,
/// query: e.g. the token in a chat webhook's path): "scheme://host[:port]"
/// plus "/***" when anything followed. "" stays ""; a string that is not
/// scheme://... gives "***".
std::string mask_url(std::string_view url);

} // namespace ces
