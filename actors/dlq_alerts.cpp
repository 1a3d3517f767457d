#include "actors/dlq_alerts.hpp"

#include "api/metrics.hpp"
#include "config/logging.hpp"
#include "config/mask.hpp"
#include "storage/backoff.hpp"
#include "storage/journal.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <ctime>
#include <mutex>

namespace ces {

namespace {

using self_ptr = dlq_alerts_actor::stateful_pointer<dlq_alerts_state>;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr size_t max_answer_bytes = 64 * 1024;

size_t on_answer(char*, size_t size, size_t n, void* user) {
  auto& seen = *static_cast<size_t*>(user);
  seen += size * n;
  // Returning less than given aborts the transfer: the status is known.
  return seen > max_answer_bytes ? 0 : size * n;
}

struct curl_deleter {
  void operator()(CURL* c) const noexcept {
    curl_easy_cleanup(c);
  }
  void operator()(curl_slist* l) const noexcept {
    curl_slist_free_all(l);
  }
};

webhook_response curl_post(const webhook_request& req) {
  webhook_response out;
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  std::unique_ptr<CURL, curl_deleter> c{curl_easy_init()};
  if (!c) {
    out.error = "curl_easy_init failed";
    return out;
  }
  curl_slist* raw = nullptr;
  auto add = [&](const std::string& line) {
    if (auto next = curl_slist_append(raw, line.c_str()))
      raw = next;
  };
  add("Content-Type: application/json");
  add("Expect:"); // no 100-continue round trip
  for (auto& [k, v] : req.headers)
    add(k + ": " + v);
  std::unique_ptr<curl_slist, curl_deleter> headers{raw};
  size_t seen = 0;
  auto timeout = static_cast<long>(std::max<int64_t>(1, req.timeout.count()));
  curl_easy_setopt(c.get(), CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c.get(), CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c.get(), CURLOPT_TIMEOUT_MS, timeout);
  curl_easy_setopt(c.get(), CURLOPT_CONNECTTIMEOUT_MS, timeout);
  curl_easy_setopt(c.get(), CURLOPT_POST, 1L);
  curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, req.body.data());
  curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(req.body.size()));
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &on_answer);
  curl_easy_setopt(c.get(), CURLOPT_WRITEDATA, &seen);
  curl_easy_setopt(c.get(), CURLOPT_USERAGENT, "crm-events-sink");
  auto rc = curl_easy_perform(c.get());
  long status = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &status);
  // A status line was read: the answer counts, even when its body was cut.
  if (status > 0 && (rc == CURLE_OK || rc == CURLE_WRITE_ERROR)) {
    out.status = status;
    return out;
  }
  // curl_easy_strerror: a fixed text per code, never the URL.
  out.error = curl_easy_strerror(rc);
  return out;
}

int64_t unix_seconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

void schedule_flush(self_ptr self) {
  auto& st = self->state;
  if (st.flush_scheduled || st.queue.empty())
    return;
  st.flush_scheduled = true;
  auto wait = std::chrono::duration_cast<milliseconds>(
    st.queue.front().due - self->clock().now());
  if (wait.count() <= 0)
    self->send(self, atom::internal_v, atom::flush_v);
  else
    self->delayed_send(self, wait, atom::internal_v, atom::flush_v);
}

void count(self_ptr self, const char* outcome) {
  if (self->state.stats != nullptr)
    self->state.stats->add_webhook_delivery(outcome);
}

/// Queues `a` for delivery; drops the oldest call when the queue is full.
void enqueue(self_ptr self, const dlq_alerts_settings& cfg,
             const dlq_alert& a) {
  auto& st = self->state;
  if (st.stats != nullptr)
    st.stats->add_dlq_alert(a.type);
  dlq_alerts_state::call c;
  c.id = api::new_webhook_id();
  c.type = a.type;
  c.body = api::dlq_alert_json(a);
  c.due = self->clock().now();
  log::event(a.type == "dlq.recovered" ? spdlog::level::info
                                       : spdlog::level::warn,
             "dlq_alerts", "dlq_alert",
             {{"type", a.type},
              {"webhook_id", c.id},
              {"pending", a.pending},
              {"new_in_window", a.new_in_window},
              {"window_s", a.window_s}});
  while (st.queue.size() >= std::max<size_t>(1, cfg.queue_limit)) {
    auto& old = st.queue.front();
    count(self, "dropped");
    log::event(spdlog::level::err, "dlq_alerts", "webhook_dropped",
               {{"type", old.type},
                {"webhook_id", old.id},
                {"attempt", static_cast<int64_t>(old.attempt)},
                {"queued", static_cast<int64_t>(st.queue.size())},
                {"reason", "queue full"}});
    st.queue.pop_front();
  }
  st.queue.push_back(std::move(c));
  schedule_flush(self);
}

/// Reads the figures and raises an alert when the episode logic says so.
void refresh(self_ptr self, const dlq_alerts_settings& cfg) {
  auto& st = self->state;
  storage::dlq_figures f;
  try {
    f = st.read(cfg.window_s);
  } catch (const storage::infra_error& e) {
    if (!st.read_failing)
      log::event(spdlog::level::warn, "dlq_alerts", "dlq_figures_unavailable",
                 {{"reason", e.what()}});
    st.read_failing = true;
    return;
  }
  if (st.read_failing)
    log::event(spdlog::level::info, "dlq_alerts", "dlq_figures_available",
               {{"pending", f.pending}});
  st.read_failing = false;
  auto type = st.episodes->observe(f.pending, f.new_in_window,
                                   self->clock().now());
  if (!type)
    return;
  dlq_alert a;
  a.type = std::move(*type);
  a.pending = f.pending;
  a.new_in_window = f.new_in_window;
  a.window_s = cfg.window_s;
  a.by_error_class = std::move(f.by_error_class);
  a.by_topic = std::move(f.by_topic);
  a.sample_ids = std::move(f.sample_ids);
  a.at = std::move(f.now);
  enqueue(self, cfg, a);
}

/// Makes one attempt of the queue's head when it is due.
void flush(self_ptr self, const dlq_alerts_settings& cfg) {
  auto& st = self->state;
  st.flush_scheduled = false;
  if (st.queue.empty())
    return;
  if (st.queue.front().due > self->clock().now()) {
    schedule_flush(self);
    return;
  }
  auto& c = st.queue.front();
  ++c.attempt;
  webhook_request req;
  req.url = cfg.url;
  req.timeout = cfg.timeout;
  req.body = c.body;
  auto ts = unix_seconds();
  req.headers = {{"webhook-id", c.id},
                 {"webhook-timestamp", std::to_string(ts)},
                 {"webhook-signature",
                  api::webhook_signature(cfg.key, c.id, ts, c.body)}};
  auto started = clock::now();
  auto res = st.post(req);
  auto took = std::chrono::duration_cast<milliseconds>(clock::now() - started);
  // The actor system's clock (simulated in the actor tests) for scheduling.
  auto now = self->clock().now();
  auto status = static_cast<int64_t>(res.status);
  auto attempt = static_cast<int64_t>(c.attempt);
  if (res.status >= 200 && res.status < 300) {
    count(self, "delivered");
    log::event(spdlog::level::info, "dlq_alerts", "webhook_delivered",
               {{"type", c.type},
                {"webhook_id", c.id},
                {"attempt", attempt},
                {"status", status},
                {"elapsed_ms", static_cast<int64_t>(took.count())}});
    st.queue.pop_front();
  } else if (res.status > 0 && res.status < 500 && res.status != 408
             && res.status != 429) {
    // A client error will not change by asking again; 408 (request
    // timeout) and 429 (too many requests) will: retried like 5xx.
    count(self, "rejected");
    log::event(spdlog::level::err, "dlq_alerts", "webhook_rejected",
               {{"type", c.type},
                {"webhook_id", c.id},
                {"attempt", attempt},
                {"status", status},
                {"url", mask_url(cfg.url)}});
    st.queue.pop_front();
  } else if (c.attempt >= cfg.max_attempts) {
    count(self, "failed");
    log::event(spdlog::level::err, "dlq_alerts", "webhook_failed",
               {{"type", c.type},
                {"webhook_id", c.id},
                {"attempt", attempt},
                {"status", status},
                {"reason", res.status > 0 ? "error status" : res.error},
                {"url", mask_url(cfg.url)}});
    st.queue.pop_front();
  } else {
    auto delay = capped_backoff(cfg.retry_initial, cfg.retry_max,
                                static_cast<uint32_t>(c.attempt));
    count(self, "retry");
    log::event(spdlog::level::warn, "dlq_alerts", "webhook_retry",
               {{"type", c.type},
                {"webhook_id", c.id},
                {"attempt", attempt},
                {"status", status},
                {"reason", res.status > 0 ? "error status" : res.error},
                {"backoff_ms", static_cast<int64_t>(delay.count())}});
    c.due = now + delay;
  }
  schedule_flush(self);
}

} // namespace

webhook_poster curl_webhook_poster() {
  return curl_post;
}

dlq_figures_source dlq_figures_on_store(std::string database_url) {
  auto store = std::make_shared<storage::dlq_stats>(std::move(database_url));
  return [store](int64_t window_s) { return store->read(window_s); };
}

dlq_alerts_actor::behavior_type
dlq_alerts(dlq_alerts_actor::stateful_pointer<dlq_alerts_state> self,
           dlq_alerts_settings cfg, dlq_figures_source read,
           webhook_poster post, metrics* stats) {
  auto& st = self->state;
  st.read = std::move(read);
  st.post = std::move(post);
  st.stats = stats;
  st.episodes.emplace(cfg.threshold, cfg.growth, cfg.cooldown);
  self->send(self, atom::internal_v, atom::refresh_v);
  return {
    [=](atom::internal, atom::refresh) {
      refresh(self, cfg);
      self->delayed_send(self, cfg.interval, atom::internal_v,
                         atom::refresh_v);
    },
    [=](atom::internal, atom::flush) { flush(self, cfg); },
  };
}

} // namespace ces
