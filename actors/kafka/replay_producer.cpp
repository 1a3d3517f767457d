#include "actors/kafka/replay_producer.hpp"

#include "actors/kafka/properties.hpp"
#include "config/mask.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <random>
#include <stdexcept>

namespace ces {

static_assert(sizeof(void*) >= sizeof(uint64_t),
              "tokens travel in librdkafka's per-message opaque pointer");

std::vector<kafka_header>
dlq_republish_headers(const std::vector<kafka_header>& original,
                      int64_t dlq_id) {
  std::vector<kafka_header> out;
  out.reserve(original.size() + 1);
  for (auto& h : original)
    if (h.key != "x-dlq-id")
      out.push_back(h);
  out.push_back(kafka_header{"x-dlq-id", std::to_string(dlq_id), true});
  return out;
}

std::vector<kafka_header> replay_headers(const std::vector<kafka_header>& original,
                                         int64_t replay_of,
                                         std::string_view replay_id,
                                         int64_t job_id,
                                         int64_t original_timestamp_ms) {
  std::vector<kafka_header> out;
  out.reserve(original.size() + 4);
  for (auto& h : original)
    if (h.key != replay_of_header && h.key != replay_id_header
        && h.key != replay_job_header && h.key != original_timestamp_header)
      out.push_back(h);
  out.push_back(
    kafka_header{std::string(replay_of_header), std::to_string(replay_of), true});
  out.push_back(
    kafka_header{std::string(replay_id_header), std::string(replay_id), true});
  if (job_id > 0)
    out.push_back(kafka_header{std::string(replay_job_header),
                               std::to_string(job_id), true});
  if (original_timestamp_ms >= 0)
    out.push_back(kafka_header{std::string(original_timestamp_header),
                               std::to_string(original_timestamp_ms), true});
  return out;
}

std::string job_replay_id(int64_t job_id, int64_t event_id) {
  return "j" + std::to_string(job_id) + "-e" + std::to_string(event_id);
}

std::string make_replay_id() {
  thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64{seq};
  }()};
  uint64_t hi = rng();
  uint64_t lo = rng();
  hi = (hi & ~uint64_t{0xF000}) | 0x4000;                  // version 4
  lo = (lo & ~(uint64_t{0xC} << 60)) | (uint64_t{0x8} << 60); // variant 10
  char buf[37];
  std::snprintf(buf, sizeof(buf), "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xFFFF),
                static_cast<unsigned>(hi & 0xFFFF),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xFFFFFFFFFFFFULL));
  return buf;
}

namespace {

std::string err_name(RdKafka::ErrorCode e) {
  return rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(e));
}

} // namespace

struct replay_producer::impl : RdKafka::DeliveryReportCb, RdKafka::EventCb {
  delivery_callback on_delivery;
  std::unique_ptr<RdKafka::Producer> producer;
  std::atomic<int64_t> in_flight{0};
  std::atomic<bool> closing{false};
  mutable std::mutex err_mtx;
  std::string last_error;
  std::vector<std::string> properties; // to scrub librdkafka's texts

  void dr_cb(RdKafka::Message& m) override {
    in_flight.fetch_sub(1);
    if (closing)
      return;
    delivery_report r;
    r.token = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(m.msg_opaque()));
    r.ok = m.err() == RdKafka::ERR_NO_ERROR;
    if (r.ok) {
      r.partition = m.partition();
      r.offset = m.offset();
      std::lock_guard<std::mutex> guard{err_mtx};
      last_error.clear();
    } else {
      r.error = m.errstr();
      r.error_name = err_name(m.err());
    }
    if (on_delivery)
      on_delivery(r);
  }

  void event_cb(RdKafka::Event& ev) override {
    if (ev.type() != RdKafka::Event::EVENT_ERROR)
      return;
    auto text = scrub_properties(err_name(ev.err()) + ": " + ev.str(),
                                 properties);
    std::lock_guard<std::mutex> guard{err_mtx};
    last_error = std::move(text);
  }
};

replay_producer::replay_producer(const replay_producer_config& cfg,
                                 delivery_callback on_delivery)
  : impl_(std::make_unique<impl>()) {
  impl_->on_delivery = std::move(on_delivery);
  impl_->properties = cfg.properties;
  std::unique_ptr<RdKafka::Conf> conf{
    RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL)};
  std::string err;
  auto set = [&](const std::string& k, const std::string& v) {
    if (auto why = set_property(*conf, k, v); !why.empty())
      throw std::invalid_argument("replay producer: " + why);
  };
  set("bootstrap.servers", cfg.bootstrap_servers);
  set("client.id", cfg.client_id);
  set("linger.ms", "1");
  set("message.timeout.ms", std::to_string(cfg.message_timeout_ms));
  for (auto& p : cfg.properties) {
    auto eq = p.find('=');
    if (eq == std::string::npos || eq == 0) // not shown: a secret's tail?
      throw std::invalid_argument("replay producer: a property is not "
                                  "key=value");
    set(p.substr(0, eq), p.substr(eq + 1));
  }
  // Not overridable.
  set("enable.idempotence", "true");
  set("acks", "all");
  if (conf->set("dr_cb", static_cast<RdKafka::DeliveryReportCb*>(impl_.get()),
                err)
        != RdKafka::Conf::CONF_OK
      || conf->set("event_cb", static_cast<RdKafka::EventCb*>(impl_.get()),
                   err)
           != RdKafka::Conf::CONF_OK)
    throw std::runtime_error("replay producer: " + err);
  impl_->producer.reset(RdKafka::Producer::create(conf.get(), err));
  if (!impl_->producer)
    throw std::runtime_error("replay producer: cannot create: "
                             + scrub_properties(err, cfg.properties));
}

replay_producer::~replay_producer() {
  if (!impl_->producer)
    return;
  impl_->closing = true;
  impl_->producer->purge(RdKafka::Producer::PURGE_QUEUE
                         | RdKafka::Producer::PURGE_INFLIGHT
                         | RdKafka::Producer::PURGE_NON_BLOCKING);
  impl_->producer->poll(0); // drop the purge reports (closing: no callback)
  impl_->producer.reset();
}

produce_status replay_producer::produce(const std::string& topic,
                                        bool has_key, const std::string& key,
                                        const std::vector<kafka_header>& headers,
                                        const std::string& payload,
                                        uint64_t token, int32_t partition) {
  produce_status st;
  auto* hdrs = RdKafka::Headers::create();
  for (auto& h : headers)
    hdrs->add(h.key, h.has_value ? h.value.data() : nullptr,
              h.has_value ? h.value.size() : 0);
  // A non-null pointer with length 0 is an empty key; nullptr a null key.
  static const char empty = 0;
  const void* key_ptr = has_key ? (key.empty() ? &empty : key.data()) : nullptr;
  auto rc = impl_->producer->produce(
    topic, partition < 0 ? RdKafka::Topic::PARTITION_UA : partition,
    RdKafka::Producer::RK_MSG_COPY, const_cast<char*>(payload.data()),
    payload.size(), key_ptr, has_key ? key.size() : 0, 0, hdrs,
    reinterpret_cast<void*>(static_cast<uintptr_t>(token)));
  if (rc != RdKafka::ERR_NO_ERROR) {
    delete hdrs; // not taken over on failure
    st.error = RdKafka::err2str(rc);
    st.error_name = err_name(rc);
    st.queue_full = rc == RdKafka::ERR__QUEUE_FULL;
    return st;
  }
  impl_->in_flight.fetch_add(1);
  st.ok = true;
  return st;
}

int replay_producer::poll(int timeout_ms) {
  return impl_->producer->poll(timeout_ms);
}

bool replay_producer::flush(int timeout_ms) {
  impl_->producer->flush(timeout_ms);
  // flush() serves the reports; poll once more for any left in the queue.
  impl_->producer->poll(0);
  return impl_->in_flight.load() == 0;
}

int64_t replay_producer::in_flight() const noexcept {
  return impl_->in_flight.load();
}

std::string replay_producer::fatal_error() const {
  std::string err;
  auto rc = impl_->producer->fatal_error(err);
  if (rc == RdKafka::ERR_NO_ERROR)
    return {};
  return err_name(rc) + ": " + err;
}

bool replay_producer::reachable(int timeout_ms, std::string& why) {
  RdKafka::Metadata* md = nullptr;
  auto err = impl_->producer->metadata(false, nullptr, &md, timeout_ms);
  std::unique_ptr<RdKafka::Metadata> guard{md};
  if (err == RdKafka::ERR_NO_ERROR)
    return true;
  why = err_name(err) + ": " + RdKafka::err2str(err);
  // Why the brokers do not answer (e.g. a refused SASL login), when
  // librdkafka said so.
  if (auto last = last_error(); !last.empty())
    why += " (last error: " + last + ")";
  return false;
}

std::string replay_producer::last_error() const {
  std::lock_guard<std::mutex> guard{impl_->err_mtx};
  return impl_->last_error;
}

} // namespace ces
