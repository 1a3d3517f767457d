// Setting librdkafka properties without ever showing a secret value.
#pragma once

#include <string>
#include <vector>

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

/// Why `properties` ("key=value" items) cannot log in to current brokers
/// with librdkafka `version` (rd_kafka_version(); -1: the one this process
/// runs), "" when nothing is known against them: SASL/SCRAM (sasl.mechanism
/// or sasl.mechanisms SCRAM-SHA-256 or SCRAM-SHA-512, any case) with
/// librdkafka before 2.6.1, whose SCRAM proof Apache Kafka 4.0 and later
/// refuse as invalid credentials (librdkafka#4895; brokers up to 3.9
/// accept it). Never quotes a value but the mechanism's.
std::string sasl_compatibility_problem(
  const std::vector<std::string>& properties, int version = -1);

} // namespace ces
