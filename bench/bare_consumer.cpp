// bench-bare-consumer: the reference for the sink's time to first row. A bare
// librdkafka high-level (group) consumer with librdkafka's defaults, a new
// group and auto.offset.reset=earliest; it subscribes, polls until the first
// message and prints when that was. Used by bench/run.sh.
//
//   bench-bare-consumer --bootstrap HOST:PORT --group G --topics a,b
//                       [--timeout-s 60] [-X key=value ...]
//
// Prints `first_msg_at=<epoch s> elapsed_s=<s since main() started>
// topic=... partition=... offset=...` and exits 0, or exits 1 on timeout.
#include <librdkafka/rdkafka.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "bench-bare-consumer: %s\n", msg.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    auto end = s.find(',', start);
    if (end == std::string::npos)
      end = s.size();
    if (end > start)
      out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

} // namespace

int main(int argc, char** argv) {
  const auto t0 = std::chrono::steady_clock::now();
  std::string bootstrap, group, topics;
  long timeout_s = 60;
  std::vector<std::pair<std::string, std::string>> extra;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc)
      die("missing value for " + a);
    std::string v = argv[++i];
    if (a == "--bootstrap")
      bootstrap = v;
    else if (a == "--group")
      group = v;
    else if (a == "--topics")
      topics = v;
    else if (a == "--timeout-s")
      timeout_s = std::strtol(v.c_str(), nullptr, 10);
    else if (a == "-X" && v.find('=') != std::string::npos)
      extra.emplace_back(v.substr(0, v.find('=')), v.substr(v.find('=') + 1));
    else
      die("unknown option " + a);
  }
  if (bootstrap.empty() || group.empty() || topics.empty())
    die("--bootstrap, --group and --topics are required");

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> props = {
    {"bootstrap.servers", bootstrap},
    {"group.id", group},
    {"client.id", "bench-bare-consumer"},
    {"auto.offset.reset", "earliest"},
    {"enable.auto.commit", "false"},
  };
  props.insert(props.end(), extra.begin(), extra.end());
  for (auto& [k, v] : props)
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
      die(k + "=" + v + ": " + errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr,
                                sizeof(errstr));
  if (rk == nullptr)
    die(std::string("cannot create consumer: ") + errstr);
  rd_kafka_poll_set_consumer(rk);
  auto names = split(topics);
  rd_kafka_topic_partition_list_t* subs =
    rd_kafka_topic_partition_list_new(static_cast<int>(names.size()));
  for (auto& t : names)
    rd_kafka_topic_partition_list_add(subs, t.c_str(), RD_KAFKA_PARTITION_UA);
  if (auto err = rd_kafka_subscribe(rk, subs))
    die(std::string("subscribe: ") + rd_kafka_err2str(err));
  rd_kafka_topic_partition_list_destroy(subs);

  const auto deadline = t0 + std::chrono::seconds(timeout_s);
  int rc = 1;
  while (std::chrono::steady_clock::now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr)
      continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const double at = std::chrono::duration<double>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
      const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
          .count();
      std::printf("first_msg_at=%.6f elapsed_s=%.6f topic=%s partition=%d "
                  "offset=%lld\n",
                  at, elapsed, rd_kafka_topic_name(m->rkt),
                  static_cast<int>(m->partition),
                  static_cast<long long>(m->offset));
      std::fflush(stdout);
      rd_kafka_message_destroy(m);
      rc = 0;
      break;
    }
    rd_kafka_message_destroy(m);
  }
  if (rc != 0)
    std::printf("first_msg_at=none elapsed_s=timeout\n");
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return rc;
}
