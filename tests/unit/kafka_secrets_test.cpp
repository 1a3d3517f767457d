// librdkafka properties that librdkafka refuses: the error text (which
// becomes an actor's crash reason, in logs, /supervision and /ready) names
// the property, and shows neither a secret value nor librdkafka's reason for
// it. No broker: every case fails before a connection is attempted.
#include "actors/kafka/properties.hpp"
#include "actors/kafka/replay_producer.hpp"
#include "actors/kafka_source.hpp"

#include <catch2/catch.hpp>
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace {

struct property_case {
  std::vector<std::string> properties;
  std::string shown;  // the error text names this
  std::string secret; // ... and never shows this
};

const std::vector<property_case>& refused() {
  static const std::vector<property_case> xs = {
    // librdkafka refuses Java's JAAS syntax (its reason quotes nothing, but
    // the old text quoted key=value).
    {{"sasl.jaas.config=org.apache.kafka.common.security.plain."
      "PlainLoginModule required username=\"u\" password=\"Sj1\";"},
     "sasl.jaas.config",
     "Sj1"},
    // Not in this build (no libcurl): refused at set.
    {{"sasl.oauthbearer.client.secret=Sc2"},
     "sasl.oauthbearer.client.secret",
     "Sc2"},
    // An internal property: refused at set.
    {{"ssl_key=Sk3"}, "ssl_key", "Sk3"},
    // Unknown key with a secret-looking name.
    {{"ssl.key.passwd=Sk4"}, "ssl.key.passwd", "Sk4"},
    {{"my.api.token=St5"}, "my.api.token", "St5"},
    // Accepted at set, refused when the client is created.
    {{"security.protocol=SSL", "ssl.key.pem=Sv6-not-a-pem"},
     "ssl.key.pem",
     "Sv6"},
    // Not key=value: perhaps the tail of a secret cut at a comma.
    {{"sasl.password=Sp7a", "Sp7b\""}, "key=value", "Sp7b"},
  };
  return xs;
}

template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

TEST_CASE("a refused secret property is named, its value never shown",
          "[kafka][secrets]") {
  for (auto& c : refused()) {
    INFO("properties: " << c.properties.front());
    auto consumer = error_of([&] {
      ces::kafka_source_config cfg;
      cfg.bootstrap_servers = "127.0.0.1:1";
      cfg.group_id = "g";
      cfg.topics = {"t"};
      cfg.properties = c.properties;
      ces::kafka_source source{cfg};
    });
    auto producer = error_of([&] {
      ces::replay_producer_config cfg;
      cfg.bootstrap_servers = "127.0.0.1:1";
      cfg.properties = c.properties;
      ces::replay_producer p{cfg, [](const ces::delivery_report&) {}};
    });
    for (auto& text : {consumer, producer}) {
      INFO("error: " << text);
      CHECK(text != "(no error)");
      CHECK(text.find(c.shown) != std::string::npos);
      CHECK(text.find(c.secret) == std::string::npos);
    }
  }
}

TEST_CASE("a refused ordinary property shows its value and the reason",
          "[kafka][secrets]") {
  ces::kafka_source_config cfg;
  cfg.bootstrap_servers = "127.0.0.1:1";
  cfg.group_id = "g";
  cfg.topics = {"t"};
  cfg.properties = {"fetch.wait.max.ms=soon"};
  auto text = error_of([&] { ces::kafka_source source{cfg}; });
  CHECK_THAT(text, Catch::Contains("fetch.wait.max.ms=soon"));
  CHECK_THAT(text, Catch::Contains("Invalid value"));
}

TEST_CASE("SCRAM with a librdkafka Kafka 4 refuses is flagged, without the "
          "password",
          "[kafka][secrets][sasl]") {
  const int v2_0_2 = 0x020002ff;
  const int v2_6_0 = 0x020600ff;
  const int v2_6_1 = 0x020601ff;
  std::vector<std::string> scram{"security.protocol=SASL_SSL",
                                 "sasl.mechanism=SCRAM-SHA-512",
                                 "sasl.username=u", "sasl.password=Sq8"};
  auto why = ces::sasl_compatibility_problem(scram, v2_0_2);
  CHECK_THAT(why, Catch::Contains("SCRAM-SHA-512"));
  CHECK_THAT(why, Catch::Contains("librdkafka 2.0.2"));
  CHECK_THAT(why, Catch::Contains("Kafka 4.0"));
  CHECK_THAT(why, Catch::Contains("librdkafka#4895"));
  CHECK(why.find("Sq8") == std::string::npos);
  CHECK(!ces::sasl_compatibility_problem(scram, v2_6_0).empty());
  CHECK(ces::sasl_compatibility_problem(scram, v2_6_1).empty());
  // sasl.mechanisms (librdkafka's alias), any case; the last one counts.
  CHECK_THAT(ces::sasl_compatibility_problem(
               {"sasl.mechanisms=scram-sha-256"}, v2_0_2),
             Catch::Contains("SCRAM-SHA-256"));
  CHECK(ces::sasl_compatibility_problem(
          {"sasl.mechanism=SCRAM-SHA-256", "sasl.mechanism=PLAIN"}, v2_0_2)
          .empty());
  CHECK(ces::sasl_compatibility_problem(
          {"security.protocol=SASL_SSL", "sasl.mechanism=PLAIN",
           "sasl.password=SCRAM-x"},
          v2_0_2)
          .empty());
  CHECK(ces::sasl_compatibility_problem({}, v2_0_2).empty());
  // This process's librdkafka by default.
  CHECK(ces::sasl_compatibility_problem(scram).empty()
        == (rd_kafka_version() >= v2_6_1));
}

TEST_CASE("an unreachable producer says why, with librdkafka's last error",
          "[kafka][sasl]") {
  ces::replay_producer_config cfg;
  cfg.bootstrap_servers = "127.0.0.1:1"; // nothing listens: refused
  ces::replay_producer p{cfg, [](const ces::delivery_report&) {}};
  // librdkafka reports the refused connection as an event, served by poll.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (p.last_error().empty()
         && std::chrono::steady_clock::now() < deadline)
    p.poll(100);
  REQUIRE(!p.last_error().empty());
  std::string why;
  CHECK(!p.reachable(200, why));
  CHECK_THAT(why, Catch::StartsWith("_"));
  CHECK_THAT(why, Catch::Contains(" (last error: " + p.last_error() + ")"));
}
