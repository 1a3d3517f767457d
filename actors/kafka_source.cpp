#include "actors/kafka_source.hpp"

#include "actors/kafka/properties.hpp"
#include "config/logging.hpp"
#include "config/mask.hpp"
#include "storage/journal.hpp"

#include <librdkafka/rdkafkacpp.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <map>
#include <stdexcept>
#include <utility>

namespace ces {

namespace {

using tp_list = std::vector<RdKafka::TopicPartition*>;

/// Owns the TopicPartition pointers librdkafka's C++ API hands around.
struct tp_guard {
  tp_list items;
  ~tp_guard() {
    RdKafka::TopicPartition::destroy(items);
  }
};

std::string describe(const tp_list& parts) {
  std::string out;
  for (auto p : parts) {
    if (!out.empty())
      out += ',';
    out += p->topic() + '/' + std::to_string(p->partition());
    if (p->offset() >= 0)
      out += '@' + std::to_string(p->offset());
  }
  return out.empty() ? "none" : out;
}

void copy_message(const RdKafka::Message& m, kafka_record& out) {
  out.topic = m.topic_name();
  out.partition = m.partition();
  out.offset = m.offset();
  out.has_key = m.key_pointer() != nullptr;
  if (out.has_key)
    out.key.assign(static_cast<const char*>(m.key_pointer()), m.key_len());
  else
    out.key.clear();
  out.headers.clear();
  if (auto hdrs = const_cast<RdKafka::Message&>(m).headers()) {
    for (auto& h : hdrs->get_all()) {
      kafka_header kh;
      kh.key = h.key();
      kh.has_value = h.value() != nullptr;
      if (kh.has_value)
        kh.value.assign(static_cast<const char*>(h.value()), h.value_size());
      out.headers.emplace_back(std::move(kh));
    }
  }
  auto ts = m.timestamp();
  switch (ts.type) {
    case RdKafka::MessageTimestamp::MSG_TIMESTAMP_CREATE_TIME:
      out.timestamp_type = 1;
      out.timestamp_ms = ts.timestamp;
      break;
    case RdKafka::MessageTimestamp::MSG_TIMESTAMP_LOG_APPEND_TIME:
      out.timestamp_type = 2;
      out.timestamp_ms = ts.timestamp;
      break;
    default:
      out.timestamp_type = 0;
      out.timestamp_ms = -1;
  }
  out.has_value = m.payload() != nullptr;
  if (out.has_value)
    out.value.assign(static_cast<const char*>(m.payload()), m.len());
  else
    out.value.clear();
}

} // namespace

struct kafka_source::impl : RdKafka::RebalanceCb, RdKafka::EventCb {
  kafka_source_config cfg;
  bool paused = false;
  bool closed = false;
  bool fatal = false;
  std::string fatal_reason;
  /// The cluster's id, learned at the first assignment.
  std::string cluster_id;
  std::deque<kafka_record> stash; // records that arrived while serving
  /// Where consumption of each assigned partition started (the journal's
  /// stored offset, else the first record read); dropped on revocation.
  std::map<std::pair<std::string, int32_t>, int64_t> starts;
  /// The offset each assigned partition's next record should have.
  gap_tracker expected;
  /// Offsets lost since the CONSUMER last asked (take_gaps()).
  std::vector<offset_gap> gaps;
  std::map<int, std::chrono::steady_clock::time_point> last_error_log;
  std::unique_ptr<RdKafka::KafkaConsumer> kc; // destroyed first

  explicit impl(const kafka_source_config& c) : cfg(c) {
  }

  // -- librdkafka callbacks (run inside consume()) ---------------------------

  void rebalance_cb(RdKafka::KafkaConsumer* c, RdKafka::ErrorCode err,
                    tp_list& parts) override {
    bool cooperative = c->rebalance_protocol() == "COOPERATIVE";
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      apply_stored_offsets(c, parts);
      for (auto p : parts) {
        auto key = std::make_pair(p->topic(), p->partition());
        if (p->offset() >= 0) {
          starts[key] = p->offset();
          expected.expect(p->topic(), p->partition(), p->offset());
        } else {
          starts.erase(key);
          expected.forget(p->topic(), p->partition());
        }
      }
      if (cooperative) {
        if (auto e = c->incremental_assign(parts)) {
          log::event(spdlog::level::err, "consumer", "assign_failed",
                     {{"reason", e->str()}});
          delete e;
        }
      } else {
        c->assign(parts);
      }
      if (paused)
        c->pause(parts);
      log::event(spdlog::level::info, "consumer", "partitions_assigned",
                 {{"partitions", describe(parts)}});
    } else if (err == RdKafka::ERR__REVOKE_PARTITIONS) {
      for (auto p : parts) {
        starts.erase({p->topic(), p->partition()});
        expected.forget(p->topic(), p->partition());
      }
      if (cooperative) {
        if (auto e = c->incremental_unassign(parts))
          delete e;
      } else {
        c->unassign();
      }
      log::event(spdlog::level::info, "consumer", "partitions_revoked",
                 {{"partitions", describe(parts)}});
    } else {
      log::event(spdlog::level::err, "consumer", "rebalance_error",
                 {{"reason", RdKafka::err2str(err)}});
      c->unassign();
      starts.clear();
      expected.clear();
    }
  }

  void event_cb(RdKafka::Event& ev) override {
    // librdkafka's texts are scrubbed of every secret property's value, as
    // the replay producer's are (defence in depth: none is known to quote
    // one).
    switch (ev.type()) {
      case RdKafka::Event::EVENT_ERROR: {
        auto what = scrub_properties(
          RdKafka::err2str(ev.err()) + ": " + ev.str(), cfg.properties);
        if (ev.fatal()) {
          fatal = true;
          fatal_reason = what;
        }
        log_error_throttled(static_cast<int>(ev.err()), what);
        break;
      }
      case RdKafka::Event::EVENT_LOG:
        if (ev.severity() <= RdKafka::Event::EVENT_SEVERITY_WARNING)
          log::event(spdlog::level::warn, "consumer", "librdkafka",
                     {{"facility", ev.fac()},
                      {"message", scrub_properties(ev.str(), cfg.properties)}});
        break;
      default:
        break;
    }
  }

  // -- helpers ---------------------------------------------------------------

  void log_error_throttled(int code, const std::string& what) {
    auto now = std::chrono::steady_clock::now();
    auto& last = last_error_log[code];
    if (now - last < std::chrono::seconds(5))
      return;
    last = now;
    log::event(spdlog::level::warn, "consumer", "kafka_error",
               {{"reason", what}});
  }

  /// Starts each partition at the journal's next offset stored in PostgreSQL
  /// for this cluster (whichever group wrote it). Without a stored offset,
  /// librdkafka uses the group's committed offset or auto.offset.reset. If
  /// PostgreSQL is unreachable the committed offsets are used; the
  /// persister's offset fence skips anything already journalled.
  void apply_stored_offsets(RdKafka::KafkaConsumer* c, tp_list& parts) {
    // The fence is keyed by the cluster id, which the group join has just
    // fetched with the cluster's metadata (the wait is a fallback).
    auto id = c->clusterid(0);
    if (id.empty())
      id = c->clusterid(2000);
    if (id.empty() || (!cluster_id.empty() && id != cluster_id)) {
      fatal = true;
      fatal_reason = id.empty() ? std::string{"the cluster reports no id"}
                                : "Kafka cluster id changed from " + cluster_id
                                    + " to " + id;
      return;
    }
    if (cluster_id.empty())
      log::event(spdlog::level::info, "consumer", "offset_fence",
                 {{"cluster_id", id}});
    cluster_id = id;
    try {
      // The assigned topics' names (a subscription may be a pattern).
      std::vector<std::string> topics;
      for (auto p : parts)
        if (std::find(topics.begin(), topics.end(), p->topic())
            == topics.end())
          topics.push_back(p->topic());
      auto stored =
        storage::load_offsets(cfg.database_url, cluster_id, topics);
      for (auto p : parts)
        for (auto& s : stored)
          if (s.topic == p->topic() && s.partition == p->partition())
            p->set_offset(s.next_offset);
    } catch (const std::exception& e) {
      log::event(spdlog::level::warn, "consumer", "stored_offsets_unavailable",
                 {{"reason", e.what()},
                  {"fallback", "kafka committed offsets"}});
    }
  }

  /// A record was read: its partition started there if nothing else said.
  /// A record past the offset expected next while the partition's log
  /// start (librdkafka caches it from every fetch response, Fetch v5+) is
  /// past it too: the broker deleted the offsets in between before they
  /// were read, and auto.offset.reset jumped over them.
  void note_read(const kafka_record& r) {
    starts.emplace(std::make_pair(r.topic, r.partition), r.offset);
    auto log_start = [&] {
      int64_t low = -1;
      int64_t high = -1;
      if (kc->get_watermark_offsets(r.topic, r.partition, &low, &high)
          != RdKafka::ERR_NO_ERROR)
        return int64_t{-1};
      return low;
    };
    if (auto gap = expected.read(r.topic, r.partition, r.offset, log_start))
      gaps.push_back(std::move(*gap));
  }

  tp_list filter_assigned(const std::vector<partition_offset>& offsets) {
    tp_guard assigned;
    kc->assignment(assigned.items);
    tp_list result;
    for (auto& o : offsets) {
      auto match = [&](RdKafka::TopicPartition* p) {
        return p->topic() == o.topic && p->partition() == o.partition;
      };
      if (std::any_of(assigned.items.begin(), assigned.items.end(), match))
        result.push_back(RdKafka::TopicPartition::create(o.topic, o.partition,
                                                         o.next_offset));
    }
    return result;
  }
};

namespace {

/// Swallows librdkafka's log and error events of the short-lived cluster id
/// client (connection refused, consumer-only properties): the caller reports
/// the outcome.
struct quiet_events : RdKafka::EventCb {
  void event_cb(RdKafka::Event&) override {
  }
};

} // namespace

namespace {

/// A client configuration: the service's bootstrap servers, then
/// `defaults`, then the user's extra properties (which override both).
/// Throws std::runtime_error naming the offending property (set_property:
/// never a secret's value).
std::unique_ptr<RdKafka::Conf>
client_conf(const kafka_source_config& cfg,
            const std::vector<std::pair<const char*, std::string>>& defaults
            = {}) {
  std::unique_ptr<RdKafka::Conf> conf{
    RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL)};
  auto set = [&](const std::string& key, const std::string& value) {
    if (auto why = set_property(*conf, key, value); !why.empty())
      throw std::runtime_error("invalid Kafka property " + why);
  };
  set("bootstrap.servers", cfg.bootstrap_servers);
  set("client.id", "crm-events-sink");
  set("log.connection.close", "false");
  for (auto& [key, value] : defaults)
    set(key, value);
  for (auto& kv : cfg.properties) {
    auto eq = kv.find('=');
    if (eq == std::string::npos) // not shown: perhaps a secret's tail
      throw std::runtime_error("invalid Kafka property: an item is not "
                               "key=value");
    set(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return conf;
}

} // namespace

void check_kafka_properties(const kafka_source_config& cfg) {
  client_conf(cfg);
}

std::string kafka_cluster_id(const kafka_source_config& cfg,
                             std::chrono::milliseconds timeout) {
  auto conf = client_conf(cfg);
  quiet_events quiet;
  std::string err;
  if (conf->set("event_cb", static_cast<RdKafka::EventCb*>(&quiet), err)
      != RdKafka::Conf::CONF_OK)
    throw std::runtime_error("cannot install Kafka callbacks: " + err);
  // A producer handle: it joins no group and sends nothing; consumer-only
  // properties are ignored here (the consumer checks them itself).
  std::unique_ptr<RdKafka::Producer> client{
    RdKafka::Producer::create(conf.get(), err)};
  if (!client)
    throw std::runtime_error("cannot create Kafka client: "
                             + scrub_properties(err, cfg.properties));
  return client->clusterid(static_cast<int>(timeout.count()));
}

std::string kafka_source::cluster_id() const {
  return impl_->cluster_id;
}

std::vector<partition_position> kafka_source::positions() {
  std::vector<partition_position> result;
  if (impl_->closed)
    return result;
  tp_guard assigned;
  impl_->kc->assignment(assigned.items); // local state, no broker call
  for (auto p : assigned.items) {
    partition_position pos;
    pos.topic = p->topic();
    pos.partition = p->partition();
    // librdkafka's cached watermarks: updated by every fetch response (and
    // the low one by the statistics timer); no broker round trip.
    int64_t low = -1;
    int64_t high = -1;
    if (impl_->kc->get_watermark_offsets(pos.topic, pos.partition, &low,
                                         &high)
          == RdKafka::ERR_NO_ERROR
        && high >= 0)
      pos.high_watermark = high;
    auto i = impl_->starts.find({pos.topic, pos.partition});
    if (i != impl_->starts.end())
      pos.start = i->second;
    else if (low >= 0)
      pos.start = low; // nothing stored nor read: auto.offset.reset=earliest
    result.push_back(std::move(pos));
  }
  return result;
}

std::vector<offset_gap> kafka_source::take_gaps() {
  return std::exchange(impl_->gaps, {});
}

kafka_source::kafka_source(const kafka_source_config& cfg)
  : impl_(std::make_unique<impl>(cfg)) {
  auto conf = client_conf(
    cfg,
    {{"group.id", cfg.group_id},
     {"enable.auto.commit", "false"},
     {"enable.auto.offset.store", "false"},
     {"auto.offset.reset", "earliest"},
     {"enable.partition.eof", "false"},
     {"session.timeout.ms", std::to_string(cfg.session_timeout_ms)},
     // An idle fetch is answered after at most this long (the mock broker
     // always waits the full time): bounds latency at low rates.
     {"fetch.wait.max.ms", "20"},
     // librdkafka's prefetch queue is most of our memory budget, and what
     // keeps the persisters fed: 16 MiB starved them (47k rows/s,
     // bench/run.sh), 64 MiB (librdkafka's default) fed them (104k) at 168
     // MiB peak RSS on a 1 M backlog; 48 MiB is the measured compromise (see
     // bench/README.md).
     {"queued.max.messages.kbytes", "49152"},
     // How soon a topic created after start is consumed: a listed topic
     // that did not exist, or a new one matching a '^' pattern, is seen at
     // the next metadata refresh (librdkafka's default: 5 minutes).
     {"topic.metadata.refresh.interval.ms", "10000"}});
  std::string err;
  if (conf->set("rebalance_cb", static_cast<RdKafka::RebalanceCb*>(impl_.get()),
                err)
        != RdKafka::Conf::CONF_OK
      || conf->set("event_cb", static_cast<RdKafka::EventCb*>(impl_.get()),
                   err)
           != RdKafka::Conf::CONF_OK)
    throw std::runtime_error("cannot install Kafka callbacks: " + err);
  impl_->kc.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!impl_->kc)
    throw std::runtime_error("cannot create Kafka consumer: "
                             + scrub_properties(err, cfg.properties));
  auto rc = impl_->kc->subscribe(cfg.topics);
  if (rc != RdKafka::ERR_NO_ERROR)
    throw std::runtime_error("cannot subscribe: " + RdKafka::err2str(rc));
}

kafka_source::~kafka_source() {
  if (impl_->kc && !impl_->closed)
    impl_->kc->close();
}

bool kafka_source::next(kafka_record& out, std::chrono::milliseconds timeout) {
  if (!impl_->stash.empty()) {
    out = std::move(impl_->stash.front());
    impl_->stash.pop_front();
    return true;
  }
  std::unique_ptr<RdKafka::Message> m{
    impl_->kc->consume(static_cast<int>(timeout.count()))};
  if (impl_->fatal)
    throw std::runtime_error("fatal Kafka error: " + impl_->fatal_reason);
  switch (m->err()) {
    case RdKafka::ERR_NO_ERROR:
      copy_message(*m, out);
      impl_->note_read(out);
      return true;
    case RdKafka::ERR__TIMED_OUT:
    case RdKafka::ERR__PARTITION_EOF:
      return false;
    default:
      impl_->log_error_throttled(
        static_cast<int>(m->err()),
        scrub_properties(m->errstr(), impl_->cfg.properties));
      return false;
  }
}

void kafka_source::pause_all() {
  impl_->paused = true;
  tp_guard parts;
  impl_->kc->assignment(parts.items);
  if (!parts.items.empty())
    impl_->kc->pause(parts.items);
}

void kafka_source::resume_all() {
  impl_->paused = false;
  tp_guard parts;
  impl_->kc->assignment(parts.items);
  if (!parts.items.empty())
    impl_->kc->resume(parts.items);
}

void kafka_source::serve() {
  // While paused no fetches happen; consume(0) only runs callbacks. Should a
  // record that was already queued come back anyway, keep it for next().
  std::unique_ptr<RdKafka::Message> m{impl_->kc->consume(0)};
  if (m->err() == RdKafka::ERR_NO_ERROR) {
    kafka_record r;
    copy_message(*m, r);
    impl_->note_read(r);
    impl_->stash.emplace_back(std::move(r));
  }
}

void kafka_source::commit(const std::vector<partition_offset>& offsets) {
  tp_guard parts;
  parts.items = impl_->filter_assigned(offsets);
  if (!parts.items.empty())
    impl_->kc->commitAsync(parts.items);
}

void kafka_source::close(const std::vector<partition_offset>& final_offsets) {
  if (impl_->closed)
    return;
  tp_guard parts;
  parts.items = impl_->filter_assigned(final_offsets);
  if (!parts.items.empty())
    impl_->kc->commitSync(parts.items);
  impl_->kc->close();
  impl_->closed = true;
}

} // namespace ces
