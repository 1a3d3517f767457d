#include "actors/kafka/properties.hpp"

#include "config/mask.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace ces {

std::string set_property(RdKafka::Conf& conf, const std::string& key,
                         const std::string& value) {
  std::string err;
  auto rc = conf.set(key, value, err);
  if (rc == RdKafka::Conf::CONF_OK)
    return {};
  if (!secret_property(key))
    return key + "=" + value + ": " + err;
  // librdkafka quotes the value of a property it cannot parse ("Invalid
  // value \"...\" for configuration property ..."): never pass its text on.
  if (rc == RdKafka::Conf::CONF_UNKNOWN)
    return key + " (value not shown): no such librdkafka property";
  return key + " (value not shown): librdkafka refused the value";
}

std::string sasl_compatibility_problem(
  const std::vector<std::string>& properties, int version) {
  if (version < 0)
    version = rd_kafka_version();
  constexpr int fixed = 0x020601ff; // 2.6.1: librdkafka#4895
  if (version >= fixed)
    return {};
  auto upper = [](std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char c) { return std::toupper(c); });
    return s;
  };
  std::string mechanism;
  for (auto& p : properties) { // the last one wins, as librdkafka sets them
    auto eq = p.find('=');
    if (eq == std::string::npos)
      continue;
    auto key = p.substr(0, eq);
    if (key == "sasl.mechanism" || key == "sasl.mechanisms")
      mechanism = upper(p.substr(eq + 1));
  }
  if (mechanism.rfind("SCRAM-", 0) != 0)
    return {};
  char have[32];
  std::snprintf(have, sizeof have, "%d.%d.%d", (version >> 24) & 0xff,
                (version >> 16) & 0xff, (version >> 8) & 0xff);
  return "sasl.mechanism=" + mechanism + " with librdkafka " + have
         + ": Apache Kafka 4.0 and later refuse its SCRAM login as invalid "
           "credentials (librdkafka#4895, fixed in 2.6.1); brokers up to 3.9 "
           "accept it. Use PLAIN over SASL_SSL, or librdkafka >= 2.6.1";
}

} // namespace ces
