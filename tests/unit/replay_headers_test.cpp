// replay_headers() and make_replay_id() (actors/kafka/replay_producer.cpp):
// the provenance headers of a replayed message, pure functions.
#include "actors/kafka/replay_producer.hpp"

#include <catch2/catch.hpp>

#include <regex>
#include <set>

using ces::kafka_header;
using ces::replay_headers;

namespace {

bool same(const std::vector<kafka_header>& a,
          const std::vector<kafka_header>& b) {
  if (a.size() != b.size())
    return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i].key != b[i].key || a[i].value != b[i].value
        || a[i].has_value != b[i].has_value)
      return false;
  return true;
}

} // namespace

TEST_CASE("provenance headers are appended after the original ones",
          "[replay]") {
  std::vector<kafka_header> original{{"source", "crm", true},
                                     {"trace", "", false},
                                     {"bin", std::string("\0\xff", 2), true}};
  auto out = replay_headers(original, 42, "id-1");
  CHECK(same(out, {{"source", "crm", true},
                   {"trace", "", false},
                   {"bin", std::string("\0\xff", 2), true},
                   {"x-replay-of", "42", true},
                   {"x-replay-id", "id-1", true}}));
  CHECK(same(replay_headers({}, 9223372036854775807LL, "x"),
             {{"x-replay-of", "9223372036854775807", true},
              {"x-replay-id", "x", true}}));
}

TEST_CASE("existing provenance headers are replaced, not duplicated",
          "[replay]") {
  // A replay of a replay: the journalled row carries the first replay's
  // headers (possibly more than once, possibly null).
  std::vector<kafka_header> original{{"x-replay-of", "1", true},
                                     {"a", "1", true},
                                     {"x-replay-id", "old", true},
                                     {"x-replay-of", "", false},
                                     {"b", "2", true}};
  auto out = replay_headers(original, 7, "new");
  CHECK(same(out, {{"a", "1", true},
                   {"b", "2", true},
                   {"x-replay-of", "7", true},
                   {"x-replay-id", "new", true}}));
  // Keys are case-sensitive, as validate.cpp reads them.
  auto kept = replay_headers({{"X-Replay-Of", "1", true}}, 2, "i");
  REQUIRE(kept.size() == 3);
  CHECK(kept[0].key == "X-Replay-Of");
}

TEST_CASE("replay ids are random version 4 UUIDs", "[replay]") {
  static const std::regex uuid4{
    "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"};
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    auto id = ces::make_replay_id();
    INFO(id);
    CHECK(std::regex_match(id, uuid4));
    seen.insert(id);
  }
  CHECK(seen.size() == 1000);
}

TEST_CASE("a job's replay carries x-replay-job and x-original-timestamp",
          "[replay]") {
  std::vector<kafka_header> original{{"source", "crm", true},
                                     {"x-replay-job", "1", true},
                                     {"x-original-timestamp", "5", true}};
  auto out = replay_headers(original, 42, ces::job_replay_id(7, 42), 7,
                            1700000000123);
  CHECK(same(out, {{"source", "crm", true},
                   {"x-replay-of", "42", true},
                   {"x-replay-id", "j7-e42", true},
                   {"x-replay-job", "7", true},
                   {"x-original-timestamp", "1700000000123", true}}));
  // A single replay (job 0) of an event with a timestamp: no job header.
  CHECK(same(replay_headers({}, 3, "u", 0, 0),
             {{"x-replay-of", "3", true},
              {"x-replay-id", "u", true},
              {"x-original-timestamp", "0", true}}));
  // No timestamp (-1): no timestamp header, and the old one is dropped.
  CHECK(same(replay_headers(original, 3, "u", 0, -1),
             {{"source", "crm", true},
              {"x-replay-of", "3", true},
              {"x-replay-id", "u", true}}));
}

TEST_CASE("job replay ids are stable per (job, event)", "[replay]") {
  CHECK(ces::job_replay_id(7, 42) == "j7-e42");
  CHECK(ces::job_replay_id(7, 42) == ces::job_replay_id(7, 42));
  CHECK(ces::job_replay_id(7, 42) != ces::job_replay_id(7, 43));
  CHECK(ces::job_replay_id(8, 42) != ces::job_replay_id(7, 42));
}

TEST_CASE("a republished dead letter carries one x-dlq-id", "[replay]") {
  std::vector<kafka_header> original{{"source", "crm", true},
                                     {"x-dlq-id", "3", true},
                                     {"trace", "", false}};
  // An old x-dlq-id (a dead letter dead-lettered again) is replaced, the
  // rest keeps its order, values and null-ness.
  CHECK(same(ces::dlq_republish_headers(original, 17),
             {{"source", "crm", true},
              {"trace", "", false},
              {"x-dlq-id", "17", true}}));
  CHECK(same(ces::dlq_republish_headers({}, 5), {{"x-dlq-id", "5", true}}));
}
