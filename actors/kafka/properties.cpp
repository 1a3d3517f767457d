#include "actors/kafka/properties.hpp"

#include "config/mask.hpp"

#include <librdkafka/rdkafkacpp.h>

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

} // namespace ces
