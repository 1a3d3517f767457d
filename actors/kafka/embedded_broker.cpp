#include "actors/kafka/embedded_broker.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <stdexcept>

namespace ces {

namespace {

/// Log callback of the hosting handle: the mock cluster logs through it. The
/// one warning every bootstrap-less handle gives is noise here.
void host_log_cb(const rd_kafka_t*, int level, const char* fac,
                 const char* buf) {
  if (std::strcmp(fac, "CONFWARN") == 0
      && std::strstr(buf, "bootstrap.servers") != nullptr)
    return;
  std::fprintf(stderr, "%%%d|embedded_broker|%s| %s\n", level, fac, buf);
}

/// The watermark client reports its problems as exceptions, not log lines
/// (e.g. reconnect attempts while a broker is set down on purpose).
void quiet_log_cb(const rd_kafka_t*, int, const char*, const char*) {
}

void set_conf(rd_kafka_conf_t* conf, const char* name, const std::string& val) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, name, val.c_str(), errstr, sizeof(errstr))
      != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error("embedded_broker: cannot set " + std::string(name)
                             + "=" + val + ": " + errstr);
  }
}

} // namespace

embedded_broker::embedded_broker(const std::vector<std::string>& topics,
                                 int partitions, int brokers) {
  options opts;
  opts.topics = topics;
  opts.partitions = partitions;
  opts.brokers = brokers;
  init(opts);
}

embedded_broker::embedded_broker(const options& opts) {
  init(opts);
}

embedded_broker::~embedded_broker() {
  destroy();
}

void embedded_broker::init(const options& opts) {
  if (opts.brokers < 1 || opts.brokers > 64)
    throw std::runtime_error("embedded_broker: broker count must be 1..64, got "
                             + std::to_string(opts.brokers));
  if (!opts.topics.empty() && (opts.partitions < 1 || opts.partitions > 10000))
    throw std::runtime_error(
      "embedded_broker: partitions per topic must be 1..10000, got "
      + std::to_string(opts.partitions));
  for (const auto& t : opts.topics)
    if (t.empty() || t.size() > 249)
      throw std::runtime_error("embedded_broker: invalid topic name '" + t
                               + "'");

  // The hosting handle: a producer that never connects anywhere.
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  set_conf(conf, "client.id", "ces-embedded-broker");
  if (!opts.debug.empty())
    set_conf(conf, "debug", opts.debug);
  rd_kafka_conf_set_log_cb(conf, host_log_cb);
  char errstr[512];
  host_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (host_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(
      std::string("embedded_broker: cannot create the hosting handle: ")
      + errstr);
  }

  cluster_ = rd_kafka_mock_cluster_new(host_, opts.brokers);
  if (cluster_ == nullptr) {
    destroy();
    throw std::runtime_error(
      "embedded_broker: rd_kafka_mock_cluster_new failed (cannot create the "
      "broker listeners on 127.0.0.1?)");
  }
  brokers_ = opts.brokers;
  const char* bs = rd_kafka_mock_cluster_bootstraps(cluster_);
  bootstraps_ = bs != nullptr ? bs : "";
  if (bootstraps_.empty()) {
    destroy();
    throw std::runtime_error("embedded_broker: the mock cluster reports no "
                             "bootstrap servers");
  }

  const int replication = std::min(opts.brokers, 3);
  for (const auto& t : opts.topics) {
    auto err = rd_kafka_mock_topic_create(cluster_, t.c_str(), opts.partitions,
                                          replication);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::string msg = "embedded_broker: cannot create topic '" + t
                        + "' with " + std::to_string(opts.partitions)
                        + " partitions: " + rd_kafka_err2str(err);
      destroy();
      throw std::runtime_error(msg);
    }
  }
}

void embedded_broker::destroy() noexcept {
  {
    std::lock_guard<std::mutex> guard{query_mtx_};
    if (query_ != nullptr) {
      rd_kafka_destroy(query_);
      query_ = nullptr;
    }
  }
  if (cluster_ != nullptr) {
    rd_kafka_mock_cluster_destroy(cluster_);
    cluster_ = nullptr;
  }
  if (host_ != nullptr) {
    rd_kafka_destroy(host_);
    host_ = nullptr;
  }
}

std::string embedded_broker::bootstraps() const {
  return bootstraps_;
}

void embedded_broker::create_topic(const std::string& topic, int partitions) {
  if (topic.empty() || partitions < 1)
    throw std::runtime_error("embedded_broker: create_topic needs a name and "
                             "at least one partition");
  auto err = rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions,
                                        std::min(brokers_, 3));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error("embedded_broker: cannot create topic '" + topic
                             + "': " + rd_kafka_err2str(err));
}

std::vector<partition_watermarks>
embedded_broker::watermarks(std::chrono::milliseconds timeout) const {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + timeout;
  auto remaining_ms = [&] {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - clock::now())
                  .count();
    return static_cast<int>(std::max<long long>(left, 1));
  };

  std::lock_guard<std::mutex> guard{query_mtx_};
  if (query_ == nullptr) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    set_conf(conf, "bootstrap.servers", bootstraps_);
    set_conf(conf, "client.id", "ces-embedded-broker-watermarks");
    set_conf(conf, "reconnect.backoff.max.ms", "1000");
    rd_kafka_conf_set_log_cb(conf, quiet_log_cb);
    char errstr[512];
    query_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (query_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      throw std::runtime_error(
        std::string("embedded_broker: cannot create the watermark client: ")
        + errstr);
    }
  }

  const rd_kafka_metadata_t* md = nullptr;
  auto err = rd_kafka_metadata(query_, 1 /* all topics */, nullptr, &md,
                               remaining_ms());
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
    throw std::runtime_error(std::string("embedded_broker: metadata request "
                                         "failed: ")
                             + rd_kafka_err2str(err));
  std::vector<partition_watermarks> out;
  for (int i = 0; i < md->topic_cnt; ++i) {
    const auto& t = md->topics[i];
    if (t.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      partition_watermarks wm;
      wm.topic = t.topic;
      wm.partition = -1;
      wm.error = rd_kafka_err2str(t.err);
      out.push_back(std::move(wm));
      continue;
    }
    for (int p = 0; p < t.partition_cnt; ++p) {
      partition_watermarks wm;
      wm.topic = t.topic;
      wm.partition = t.partitions[p].id;
      err = rd_kafka_query_watermark_offsets(query_, t.topic, wm.partition,
                                             &wm.low, &wm.high, remaining_ms());
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
        wm.error = rd_kafka_err2str(err);
      out.push_back(std::move(wm));
    }
  }
  rd_kafka_metadata_destroy(md);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.topic != b.topic ? a.topic < b.topic : a.partition < b.partition;
  });
  return out;
}

} // namespace ces
