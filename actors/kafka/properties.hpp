// Setting librdkafka properties without ever showing a secret value.
#pragma once

#include <string>

namespace RdKafka {
class Conf;
} // namespace RdKafka

namespace ces {

/// Sets `key` to `value` on `conf`. Returns "" on success, else why
/// librdkafka refused, starting with the key: "key=value: <librdkafka's
/// reason>", or, for a property whose value is secret (secret_property() in
/// config/mask.hpp), "key (value not shown): ..." with neither the value nor
/// librdkafka's reason, which may quote it.
std::string set_property(RdKafka::Conf& conf, const std::string& key,
                         const std::string& value);

} // namespace ces
