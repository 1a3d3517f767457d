// api::http_server over real sockets, with a test dispatcher that answers
// from another thread after a delay (as the HTTP-bridge actor will): answers
// arrive, the in-flight bound answers 503 overloaded, 413, 405 with Allow,
// unmatched 404, HEAD, a dropped pending_request gets 503, a request nobody
// answers gets 504, stop() with requests pending does not hang, a taken port
// is a clear error, RESTinio's own body limit closes the connection;
// X-Request-Id on every answer, request_meta (client address, Authorization);
// HTTPS with a throwaway CA (curl --cacert), TLS handshake timeout.
#include "api/json.hpp"
#include "api/server.hpp"
#include "tests/support/process.hpp"
#include "tests/support/tls_pki.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <regex>
#include <thread>

using namespace std::chrono_literals;
using ces::api::http_server;
using ces::api::http_server_options;
using ces::api::parsed_request;
using ces::api::pending_request;
using ces::api::route_kind;
using ces::test::http_request;
using ces::test::http_response;

namespace {

const std::string host = "127.0.0.1";

/// Answers dispatched requests from its own thread, after `delay`, with
/// {"kind":..., "id":..., "limit":...}; or holds them until release().
class test_dispatcher {
public:
  explicit test_dispatcher(std::chrono::milliseconds delay = 20ms)
    : delay_(delay), worker_([this] { run(); }) {
  }

  ~test_dispatcher() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      quit_ = true;
      hold_ = false;
    }
    cv_.notify_all();
    worker_.join();
  }

  http_server::dispatcher fn() {
    return [this](std::shared_ptr<pending_request> p, parsed_request r) {
      std::lock_guard<std::mutex> guard{mtx_};
      ++dispatched_;
      if (drop_)
        return; // p goes out of scope unanswered
      queue_.emplace_back(std::move(p), r);
      cv_.notify_all();
    };
  }

  /// Keep requests until release().
  void hold() {
    std::lock_guard<std::mutex> guard{mtx_};
    hold_ = true;
  }
  void release() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      hold_ = false;
    }
    cv_.notify_all();
  }
  /// Drop requests without answering.
  void drop() {
    std::lock_guard<std::mutex> guard{mtx_};
    drop_ = true;
  }
  /// Forget held requests without answering (as if the actor died).
  void forget_held() {
    std::deque<std::pair<std::shared_ptr<pending_request>, parsed_request>> q;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      q.swap(queue_);
    }
  }
  int dispatched() {
    std::lock_guard<std::mutex> guard{mtx_};
    return dispatched_;
  }
  /// Second respond() calls that were not ignored (must stay 0).
  int second_answers() const {
    return second_answers_.load();
  }
  std::vector<parsed_request> seen() {
    std::lock_guard<std::mutex> guard{mtx_};
    return seen_;
  }
  /// meta() of the requests answered, in order.
  std::vector<ces::api::request_meta> metas() {
    std::lock_guard<std::mutex> guard{mtx_};
    return metas_;
  }

private:
  void run() {
    std::unique_lock<std::mutex> lock{mtx_};
    for (;;) {
      cv_.wait(lock, [&] { return quit_ || (!hold_ && !queue_.empty()); });
      if (queue_.empty() && quit_)
        return;
      auto [p, r] = std::move(queue_.front());
      queue_.pop_front();
      seen_.push_back(r);
      metas_.push_back(p->meta());
      lock.unlock();
      std::this_thread::sleep_for(delay_);
      auto body = nlohmann::json{{"kind", ces::api::to_string(r.kind)},
                                 {"id", r.id},
                                 {"limit", r.limit}}
                    .dump();
      p->respond(200, body, {{"X-Test", "yes"}});
      if (p->respond(500, "{}")) // must be ignored: exactly once
        ++second_answers_;
      p.reset();
      lock.lock();
    }
  }

  std::chrono::milliseconds delay_;
  std::atomic<int> second_answers_{0};
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<std::pair<std::shared_ptr<pending_request>, parsed_request>>
    queue_;
  std::vector<parsed_request> seen_;
  std::vector<ces::api::request_meta> metas_;
  bool hold_ = false;
  bool drop_ = false;
  bool quit_ = false;
  int dispatched_ = 0;
  std::thread worker_; // last: starts running in the constructor
};

/// Observed (route, status) pairs.
struct observations {
  std::mutex mtx;
  std::vector<std::pair<std::string, int>> seen;
  int bad_seconds = 0;
  std::function<void(route_kind, int, double)> fn() {
    return [this](route_kind k, int status, double seconds) {
      std::lock_guard<std::mutex> guard{mtx};
      if (seconds < 0 || seconds > 60)
        ++bad_seconds;
      seen.emplace_back(ces::api::to_string(k), status);
    };
  }
  int count(const std::string& route, int status) {
    std::lock_guard<std::mutex> guard{mtx};
    int n = 0;
    for (auto& [r, s] : seen)
      n += r == route && s == status;
    return n;
  }
};

http_server_options local_options() {
  http_server_options o;
  o.address = host;
  o.port = 0;
  o.threads = 2;
  return o;
}

nlohmann::json body_of(const http_response& r) {
  INFO("status " << r.status << " error '" << r.error << "' body: " << r.body);
  nlohmann::json j;
  REQUIRE_NOTHROW(j = nlohmann::json::parse(r.body));
  return j;
}

void check_error(const http_response& r, int status, const std::string& code) {
  INFO("status " << r.status << " error '" << r.error << "' body: " << r.body);
  CHECK(r.status == status);
  CHECK(r.header("content-type") == "application/json");
  auto j = body_of(r);
  CHECK(j["error"] == code);
  CHECK(j["message"].is_string());
  CHECK_FALSE(j["message"].get<std::string>().empty());
}

/// Sends raw bytes, returns everything the server sends until it closes
/// (or `timeout`), and whether it closed.
std::pair<std::string, bool> raw_exchange(uint16_t port,
                                          const std::string& data,
                                          std::chrono::milliseconds timeout
                                          = 5s) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
  size_t sent = 0;
  while (sent < data.size()) {
    auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0)
      break; // the server may close while we send
    sent += static_cast<size_t>(n);
  }
  std::string out;
  bool closed = false;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    if (left <= 0)
      break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0)
      break;
    char buf[4096];
    auto n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) {
      closed = true;
      break;
    }
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return {out, closed};
}

} // namespace

TEST_CASE("dispatched requests are answered from another thread",
          "[http_server]") {
  test_dispatcher d{50ms};
  observations obs;
  auto o = local_options();
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  REQUIRE(s.port() != 0);
  auto t0 = std::chrono::steady_clock::now();
  auto r = ces::test::http_get(host, s.port(), "/events/latest?limit=3");
  CHECK(std::chrono::steady_clock::now() - t0 >= 50ms);
  REQUIRE(r.status == 200);
  CHECK(r.header("content-type") == "application/json");
  CHECK(r.header("x-test") == "yes");
  CHECK(r.header("cache-control") == "no-store");
  auto j = body_of(r);
  CHECK(j["kind"] == "events_latest");
  CHECK(j["limit"] == 3);

  auto e = ces::test::http_get(host, s.port(), "/events/%34%32");
  CHECK(body_of(e)["id"] == 42);
  auto p = ces::test::http_post(host, s.port(), "/replay/7", "{\"ignored\":1}");
  CHECK(body_of(p)["kind"] == "replay");
  CHECK(body_of(p)["id"] == 7);
  auto dl = ces::test::http_get(host, s.port(), "/dlq");
  CHECK(body_of(dl)["limit"] == 50);
  auto rd = ces::test::http_get(host, s.port(), "/ready");
  CHECK(body_of(rd)["kind"] == "ready");
  CHECK(d.dispatched() == 5);
  CHECK(s.in_flight() == 0);
  CHECK(obs.count("events_latest", 200) == 1);
  CHECK(obs.count("event_by_id", 200) == 1);
  CHECK(obs.count("replay", 200) == 1);
  CHECK(obs.bad_seconds == 0);
  CHECK(d.second_answers() == 0);
}

TEST_CASE("errors are answered at once, in JSON", "[http_server]") {
  test_dispatcher d;
  observations obs;
  auto o = local_options();
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto port = s.port();

  check_error(ces::test::http_get(host, port, "/nope"), 404, "not_found");
  check_error(ces::test::http_get(host, port, "/events/abc"), 400, "bad_id");
  check_error(ces::test::http_get(host, port,
                                  "/events/1180591620717411303424"),
              400, "bad_id");
  check_error(ces::test::http_get(host, port, "/events/latest?limit=0"), 400,
              "bad_limit");
  check_error(ces::test::http_get(host, port, "/dlq?limit=100000"), 400,
              "bad_limit");
  check_error(ces::test::http_get(host, port, "/dlq?foo=1"), 400,
              "bad_query");
  check_error(ces::test::http_get(host, port, "/events/%zz"), 400, "bad_path");

  auto m = ces::test::http_get(host, port, "/replay/1");
  check_error(m, 405, "method_not_allowed");
  CHECK(m.header("allow") == "POST");
  auto m2 = ces::test::http_post(host, port, "/events/latest");
  check_error(m2, 405, "method_not_allowed");
  CHECK(m2.header("allow") == "GET, HEAD");
  auto m3 = http_request("PUT", host, port, "/dlq");
  check_error(m3, 405, "method_not_allowed");
  CHECK(m3.header("allow") == "GET, HEAD, DELETE");

  // Over max_body_bytes (64 KiB) but under RESTinio's limit: our 413.
  auto big = ces::test::http_post(host, port, "/replay/1",
                                  std::string(70 * 1024, 'x'));
  check_error(big, 413, "body_too_large");
  auto big_get = http_request("GET", host, port, "/events/latest",
                              std::string(100 * 1024, 'x'));
  check_error(big_get, 413, "body_too_large");
  // A small body on a GET is ignored.
  auto small_get = http_request("GET", host, port, "/events/latest",
                                "{\"x\":1}");
  CHECK(small_get.status == 200);

  CHECK(d.dispatched() == 1);
  CHECK(obs.count("unmatched", 404) == 1);
  CHECK(obs.count("event_by_id", 400) == 2);
  CHECK(obs.count("replay", 405) == 1);
  CHECK(obs.count("replay", 413) == 1);
  CHECK(obs.count("unmatched", 400) == 1);
}

TEST_CASE("health is answered by the server itself", "[http_server]") {
  test_dispatcher d;
  observations obs;
  auto o = local_options();
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto r = ces::test::http_get(host, s.port(), "/health");
  REQUIRE(r.status == 200);
  CHECK(r.body == ces::api::health_json());
  CHECK(d.dispatched() == 0);
  CHECK(obs.count("health", 200) == 1);
}

TEST_CASE("HEAD gets status and headers without a body", "[http_server]") {
  test_dispatcher d;
  http_server s{local_options(), d.fn()};
  auto [text, closed] = raw_exchange(
    s.port(), "HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(closed);
  INFO(text);
  CHECK(text.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK_THAT(text,
             Catch::Contains("Content-Length: "
                             + std::to_string(ces::api::health_json().size())));
  CHECK(text.size() == text.find("\r\n\r\n") + 4); // no body
  auto [t404, c404] = raw_exchange(
    s.port(), "HEAD /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(t404.rfind("HTTP/1.1 404 Not Found\r\n", 0) == 0);
  CHECK(t404.size() == t404.find("\r\n\r\n") + 4);
  // A dispatched HEAD: the answer's body is not sent either.
  auto [tl, cl] = raw_exchange(
    s.port(),
    "HEAD /events/latest HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(tl.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(tl.size() == tl.find("\r\n\r\n") + 4);
  REQUIRE(d.seen().size() == 1);
  CHECK(d.seen()[0].head);
}

TEST_CASE("keep-alive connections carry several requests", "[http_server]") {
  test_dispatcher d{5ms};
  http_server s{local_options(), d.fn()};
  std::string reqs =
    "GET /events/1 HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /events/3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  auto [text, closed] = raw_exchange(s.port(), reqs);
  CHECK(closed);
  INFO(text);
  // Pipelined answers come back in request order.
  auto a = text.find("\"id\":1");
  auto b = text.find("not_found");
  auto c = text.find("\"id\":3");
  REQUIRE(a != std::string::npos);
  REQUIRE(b != std::string::npos);
  REQUIRE(c != std::string::npos);
  CHECK(a < b);
  CHECK(b < c);
}

TEST_CASE("the in-flight bound answers 503 overloaded at once",
          "[http_server]") {
  test_dispatcher d{0ms};
  d.hold();
  observations obs;
  auto o = local_options();
  o.max_in_flight = 2;
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto port = s.port();
  auto f1 = std::async(std::launch::async, [&] {
    return ces::test::http_get(host, port, "/events/1", 10s);
  });
  auto f2 = std::async(std::launch::async, [&] {
    return ces::test::http_get(host, port, "/events/2", 10s);
  });
  for (int i = 0; i < 500 && s.in_flight() < 2; ++i)
    std::this_thread::sleep_for(5ms);
  REQUIRE(s.in_flight() == 2);
  auto t0 = std::chrono::steady_clock::now();
  auto third = ces::test::http_get(host, port, "/events/3");
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  check_error(third, 503, "overloaded");
  CHECK(third.header("retry-after") == "1");
  // Errors and health are not bounded.
  CHECK(ces::test::http_get(host, port, "/health").status == 200);
  CHECK(ces::test::http_get(host, port, "/nope").status == 404);
  d.release();
  CHECK(f1.get().status == 200);
  CHECK(f2.get().status == 200);
  CHECK(s.in_flight() == 0);
  CHECK(ces::test::http_get(host, port, "/events/4").status == 200);
  CHECK(obs.count("event_by_id", 503) == 1);
  CHECK(obs.count("event_by_id", 200) == 3);
}

TEST_CASE("many concurrent clients: every request gets an answer",
          "[http_server]") {
  test_dispatcher d{1ms};
  auto o = local_options();
  o.max_in_flight = 8;
  http_server s{o, d.fn()};
  std::atomic<int> ok{0}, overloaded{0}, other{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 8; ++t)
    clients.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        auto r = ces::test::http_get(host, s.port(),
                                     "/events/" + std::to_string(t * 100 + i + 1),
                                     10s);
        if (r.status == 200)
          ++ok;
        else if (r.status == 503)
          ++overloaded;
        else
          ++other;
      }
    });
  for (auto& c : clients)
    c.join();
  CHECK(ok + overloaded == 200);
  CHECK(other == 0);
  CHECK(ok > 0);
  CHECK(s.in_flight() == 0);
}

TEST_CASE("a dropped pending_request answers 503 dropped", "[http_server]") {
  test_dispatcher d;
  d.drop();
  observations obs;
  auto o = local_options();
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto r = ces::test::http_post(host, s.port(), "/replay/5");
  check_error(r, 503, "dropped");
  CHECK(s.in_flight() == 0);
  CHECK(obs.count("replay", 503) == 1);

  // Held, then forgotten (the actor holding it died).
  test_dispatcher held;
  held.hold();
  http_server s2{local_options(), held.fn()};
  auto f = std::async(std::launch::async, [&] {
    return ces::test::http_get(host, s2.port(), "/events/9", 10s);
  });
  for (int i = 0; i < 500 && s2.in_flight() < 1; ++i)
    std::this_thread::sleep_for(5ms);
  REQUIRE(s2.in_flight() == 1);
  held.forget_held();
  check_error(f.get(), 503, "dropped");
}

TEST_CASE("a request nobody answers gets 504 timeout", "[http_server]") {
  test_dispatcher d;
  d.hold();
  observations obs;
  auto o = local_options();
  o.request_timeout = 300ms;
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto t0 = std::chrono::steady_clock::now();
  auto r = ces::test::http_get(host, s.port(), "/dlq", 10s);
  auto took = std::chrono::steady_clock::now() - t0;
  check_error(r, 504, "timeout");
  CHECK(took >= 300ms);
  CHECK(took < 2s);
  CHECK(s.in_flight() == 0);
  CHECK(obs.count("dlq_latest", 504) == 1);
  d.release(); // the late answer is ignored
}

TEST_CASE("a throwing dispatcher gives 500", "[http_server]") {
  http_server s{local_options(), [](std::shared_ptr<pending_request>,
                                    parsed_request) {
                  throw std::runtime_error("mailbox closed");
                }};
  auto r = ces::test::http_get(host, s.port(), "/events/1");
  check_error(r, 500, "internal");
  CHECK_THAT(body_of(r)["message"].get<std::string>(),
             Catch::Contains("mailbox closed"));
}

TEST_CASE("stop() with requests pending answers them and does not hang",
          "[http_server]") {
  test_dispatcher d;
  d.hold();
  auto o = local_options();
  o.max_in_flight = 4;
  auto s = std::make_unique<http_server>(o, d.fn());
  auto port = s->port();
  std::vector<std::future<http_response>> clients;
  for (int i = 1; i <= 3; ++i)
    clients.push_back(std::async(std::launch::async, [port, i] {
      return ces::test::http_get(host, port, "/events/" + std::to_string(i),
                                 10s);
    }));
  for (int i = 0; i < 500 && s->in_flight() < 3; ++i)
    std::this_thread::sleep_for(5ms);
  REQUIRE(s->in_flight() == 3);
  auto t0 = std::chrono::steady_clock::now();
  s->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  for (auto& c : clients) {
    auto r = c.get();
    check_error(r, 503, "shutting_down");
  }
  s->stop(); // idempotent
  // The port is free again, nothing listens.
  auto after = ces::test::http_get(host, port, "/health", 1s);
  CHECK(after.status == 0);
  s.reset();
  // Answers after stop are ignored (the dispatcher still holds nothing, but a
  // pending_request kept past the server's life must be harmless).
  d.release();
}

TEST_CASE("stop() with idle keep-alive connections open", "[http_server]") {
  test_dispatcher d;
  auto s = std::make_unique<http_server>(local_options(), d.fn());
  // Two connections: one idle after an answer, one that sent half a request.
  int fds[2];
  for (int i = 0; i < 2; ++i) {
    fds[i] = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(s->port());
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fds[i], reinterpret_cast<sockaddr*>(&addr),
                      sizeof(addr))
            == 0);
  }
  std::string full = "GET /health HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string half = "GET /events/1 HTTP/1.1\r\nHo";
  REQUIRE(::send(fds[0], full.data(), full.size(), MSG_NOSIGNAL) > 0);
  REQUIRE(::send(fds[1], half.data(), half.size(), MSG_NOSIGNAL) > 0);
  char buf[1024];
  pollfd p{fds[0], POLLIN, 0};
  REQUIRE(::poll(&p, 1, 5000) == 1);
  CHECK(::recv(fds[0], buf, sizeof(buf), 0) > 0);
  auto t0 = std::chrono::steady_clock::now();
  s.reset();
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  // Both connections are closed by the server.
  for (int fd : fds) {
    pollfd q{fd, POLLIN, 0};
    CHECK(::poll(&q, 1, 2000) == 1);
    CHECK(::recv(fd, buf, sizeof(buf), 0) <= 0);
    ::close(fd);
  }
}

TEST_CASE("a pending_request may outlive its server", "[http_server]") {
  std::promise<std::shared_ptr<pending_request>> kept;
  auto kept_f = kept.get_future();
  auto s = std::make_unique<http_server>(
    local_options(),
    [&kept](std::shared_ptr<pending_request> p, parsed_request) {
      kept.set_value(std::move(p));
    });
  auto port = s->port();
  auto f = std::async(std::launch::async, [port] {
    return ces::test::http_get(host, port, "/events/1", 10s);
  });
  auto p = kept_f.get();
  s.reset(); // destructor stops: answers 503 shutting_down
  CHECK(p->answered());
  CHECK_FALSE(p->respond(200, "{}"));
  p.reset(); // destructor: already answered, nothing to write
  check_error(f.get(), 503, "shutting_down");
}

TEST_CASE("a taken port is a clear error", "[http_server]") {
  test_dispatcher d;
  http_server first{local_options(), d.fn()};
  auto o = local_options();
  o.port = first.port();
  try {
    http_server second{o, d.fn()};
    FAIL("a second server on the same port started");
  } catch (const std::runtime_error& e) {
    CHECK_THAT(e.what(), Catch::StartsWith("cannot serve HTTP on 127.0.0.1:"
                                           + std::to_string(first.port())
                                           + ": "));
    CHECK_THAT(e.what(), Catch::Contains("in use"));
  }
  auto bad = local_options();
  bad.address = "not-an-address";
  CHECK_THROWS_AS(http_server(bad, d.fn()), std::runtime_error);
  auto zero = local_options();
  zero.threads = 0;
  CHECK_THROWS_AS(http_server(zero, d.fn()), std::invalid_argument);
  // The first server still serves.
  CHECK(ces::test::http_get(host, first.port(), "/health").status == 200);
}

TEST_CASE("RESTinio's own body limit closes the connection without an answer",
          "[http_server]") {
  test_dispatcher d;
  auto o = local_options();
  o.routes.max_body_bytes = 1024;
  o.max_read_body_bytes = 64 * 1024;
  http_server s{o, d.fn()};
  SECTION("between our limit and RESTinio's: JSON 413") {
    auto r = ces::test::http_post(host, s.port(), "/replay/1",
                                  std::string(10 * 1024, 'x'));
    check_error(r, 413, "body_too_large");
  }
  SECTION("a Content-Length above RESTinio's limit: closed at the headers") {
    auto [text, closed] = raw_exchange(
      s.port(), "POST /replay/1 HTTP/1.1\r\nHost: x\r\nContent-Length: "
                  + std::to_string(10 * 1024 * 1024) + "\r\n\r\n");
    CHECK(closed);
    CHECK(text.empty());
  }
  SECTION("a chunked body growing past RESTinio's limit: closed") {
    std::string req =
      "POST /replay/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 80; ++i)
      req += "400\r\n" + std::string(1024, 'x') + "\r\n";
    req += "0\r\n\r\n";
    auto [text, closed] = raw_exchange(s.port(), req);
    CHECK(closed);
    CHECK(text.empty());
  }
  SECTION("a chunked body under RESTinio's limit: JSON 413") {
    std::string req = "POST /replay/1 HTTP/1.1\r\nHost: x\r\n"
                      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n";
    for (int i = 0; i < 4; ++i)
      req += "400\r\n" + std::string(1024, 'x') + "\r\n";
    req += "0\r\n\r\n";
    auto [text, closed] = raw_exchange(s.port(), req);
    CHECK(text.rfind("HTTP/1.1 413 Payload Too Large\r\n", 0) == 0);
    CHECK_THAT(text, Catch::Contains("body_too_large"));
  }
  // The server keeps serving.
  CHECK(ces::test::http_get(host, s.port(), "/health").status == 200);
}

namespace {

/// Lowers this process's soft RLIMIT_NOFILE for its lifetime.
struct fd_limit_guard {
  rlimit saved{};
  explicit fd_limit_guard(rlim_t soft) {
    REQUIRE(::getrlimit(RLIMIT_NOFILE, &saved) == 0);
    rlimit low = saved;
    low.rlim_cur = soft;
    REQUIRE(::setrlimit(RLIMIT_NOFILE, &low) == 0);
  }
  ~fd_limit_guard() {
    ::setrlimit(RLIMIT_NOFILE, &saved);
  }
};

/// `n` idle TCP connections to 127.0.0.1:port, held by a child process (its
/// descriptors do not count against ours) until release().
class idle_clients {
public:
  idle_clients(uint16_t port, int n) {
    int ready[2];
    int hold[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(hold) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Async-signal-safe calls only (the parent has threads).
      for (int fd = 3; fd < 4096; ++fd)
        if (fd != ready[1] && fd != hold[0])
          ::close(fd);
      rlimit r{};
      ::getrlimit(RLIMIT_NOFILE, &r);
      r.rlim_cur = r.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &r);
      char opened = 0;
      for (int i = 0; i < n; ++i) {
        int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0
            || ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr))
                 != 0)
          ::_exit(1);
      }
      opened = 1;
      if (::write(ready[1], &opened, 1) != 1)
        ::_exit(1);
      char c;
      while (::read(hold[0], &c, 1) > 0) {
      }
      ::_exit(0);
    }
    ::close(ready[1]);
    ::close(hold[0]);
    hold_ = hold[1];
    char c = 0;
    auto got = ::read(ready[0], &c, 1);
    ::close(ready[0]);
    REQUIRE(got == 1);
  }

  /// Closes every connection (the child exits).
  void release() {
    if (pid_ <= 0)
      return;
    ::close(hold_);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  ~idle_clients() {
    release();
  }

private:
  pid_t pid_ = -1;
  int hold_ = -1;
};

/// GET /health until it is answered or `within` passed.
http_response health_within(uint16_t port, std::chrono::milliseconds within) {
  auto until = std::chrono::steady_clock::now() + within;
  http_response r;
  do {
    r = ces::test::http_get(host, port, "/health", 500ms);
    if (r.status != 0)
      break;
    std::this_thread::sleep_for(50ms);
  } while (std::chrono::steady_clock::now() < until);
  return r;
}

} // namespace

TEST_CASE("accepting resumes after connections exhausted the descriptors",
          "[http_server]") {
  test_dispatcher d;
  auto opts = local_options();
  opts.max_connections = 100000;
  std::unique_ptr<http_server> s;
  std::optional<fd_limit_guard> limit;
  SECTION("the limit is known at start: the bound stays below it") {
    limit.emplace(160);
    s = std::make_unique<http_server>(opts, d.fn());
    CHECK(s->connections().max == 160 - ces::api::fd_reserve);
  }
  SECTION("the limit falls after start: accept() fails, the server recovers") {
    s = std::make_unique<http_server>(opts, d.fn());
    limit.emplace(160);
  }
  {
    // Twice as many idle connections as descriptors (the kernel queues
    // what the server does not accept).
    idle_clients clients{s->port(), 320};
    std::this_thread::sleep_for(500ms); // the server accepts what it can
    INFO("open " << s->connections().open << " refused "
                 << s->connections().refused);
    CHECK(s->connections().open < 160);
    clients.release();
  }
  auto r = health_within(s->port(), 2s);
  INFO("error: " << r.error);
  CHECK(r.status == 200);
  // Accepting goes on.
  CHECK(ces::test::http_get(host, s->port(), "/health", 2s).status == 200);
}

TEST_CASE("connections beyond max_connections are closed at once",
          "[http_server]") {
  test_dispatcher d;
  auto opts = local_options();
  opts.max_connections = 5;
  http_server s{opts, d.fn()};
  idle_clients clients{s.port(), 8};
  auto until = std::chrono::steady_clock::now() + 5s;
  while (s.connections().refused < 3
         && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(10ms);
  CHECK(s.connections().open == 5);
  CHECK(s.connections().refused == 3);
  // Full: a new connection is closed without an answer.
  CHECK(ces::test::http_get(host, s.port(), "/health", 2s).status == 0);
  clients.release();
  auto r = health_within(s.port(), 2s);
  CHECK(r.status == 200);
}

// --- Request ids and request_meta ---------------------------------------

namespace {

using header_pairs = std::vector<std::pair<std::string, std::string>>;

http_response get_with(uint16_t port, const std::string& target,
                       const header_pairs& headers,
                       const std::string& method = "GET",
                       const std::string& body = {}) {
  return http_request(method, host, port, target, body, "application/json",
                      10s, headers);
}

bool generated_id(const std::string& id) {
  static const std::regex hex32{"^[0-9a-f]{32}$"};
  return std::regex_match(id, hex32);
}

/// X-Request-Id headers in a raw response.
int request_id_headers(const std::string& text) {
  int n = 0;
  for (auto at = text.find("X-Request-Id:"); at != std::string::npos;
       at = text.find("X-Request-Id:", at + 1))
    ++n;
  return n;
}

} // namespace

TEST_CASE("valid_request_id and make_request_id", "[http_server]") {
  using ces::api::valid_request_id;
  CHECK(valid_request_id("a"));
  CHECK(valid_request_id("req-1.2_3:4"));
  CHECK(valid_request_id(std::string(128, 'x')));
  CHECK_FALSE(valid_request_id(""));
  CHECK_FALSE(valid_request_id(std::string(129, 'x')));
  CHECK_FALSE(valid_request_id("a b"));
  CHECK_FALSE(valid_request_id("a/b"));
  CHECK_FALSE(valid_request_id("a\"b"));
  CHECK_FALSE(valid_request_id("caf\xc3\xa9"));
  auto a = ces::api::make_request_id();
  auto b = ces::api::make_request_id();
  CHECK(generated_id(a));
  CHECK(generated_id(b));
  CHECK(a != b);
  // From other threads too (one generator per thread, each seeded anew).
  std::string c;
  std::thread{[&] { c = ces::api::make_request_id(); }}.join();
  CHECK(generated_id(c));
  CHECK(c != a);
  CHECK(c != b);
}

TEST_CASE("X-Request-Id is echoed when valid, generated otherwise",
          "[http_server]") {
  test_dispatcher d{0ms};
  http_server s{local_options(), d.fn()};
  auto port = s.port();
  SECTION("a valid client id is echoed and given to the dispatcher") {
    for (std::string id : {std::string("req-1.2_3:4"), std::string(128, 'z')}) {
      auto r = get_with(port, "/events/1", {{"X-Request-Id", id}});
      CHECK(r.status == 200);
      CHECK(r.header("x-request-id") == id);
    }
    REQUIRE(d.metas().size() == 2);
    CHECK(d.metas()[0].request_id == "req-1.2_3:4");
  }
  SECTION("an invalid client id is replaced") {
    for (std::string id :
         {std::string(129, 'z'), std::string("a/b"), std::string("a;b"),
          std::string("caf\xc3\xa9")}) {
      auto r = get_with(port, "/events/1", {{"X-Request-Id", id}});
      CHECK(r.status == 200);
      INFO("sent " << id << " got " << r.header("x-request-id"));
      CHECK(generated_id(r.header("x-request-id")));
    }
    for (auto& m : d.metas())
      CHECK(generated_id(m.request_id));
  }
  SECTION("two X-Request-Id headers: a generated one") {
    auto r = get_with(port, "/events/1",
                      {{"X-Request-Id", "one"}, {"X-Request-Id", "two"}});
    CHECK(r.status == 200);
    CHECK(generated_id(r.header("x-request-id")));
  }
  SECTION("none: a fresh one per request, the dispatcher sees the same") {
    auto r1 = ces::test::http_get(host, port, "/events/1");
    auto r2 = ces::test::http_get(host, port, "/events/2");
    CHECK(generated_id(r1.header("x-request-id")));
    CHECK(generated_id(r2.header("x-request-id")));
    CHECK(r1.header("x-request-id") != r2.header("x-request-id"));
    REQUIRE(d.metas().size() == 2);
    CHECK(d.metas()[0].request_id == r1.header("x-request-id"));
    CHECK(d.metas()[1].request_id == r2.header("x-request-id"));
  }
}

TEST_CASE("X-Request-Id is on every answer the server writes itself",
          "[http_server]") {
  const header_pairs with_id = {{"X-Request-Id", "err-42"}};
  SECTION("400, 404, 405, 413, health, HEAD") {
    test_dispatcher d;
    http_server s{local_options(), d.fn()};
    auto port = s.port();
    auto nf = get_with(port, "/nope", with_id);
    check_error(nf, 404, "not_found");
    CHECK(nf.header("x-request-id") == "err-42");
    auto bad = get_with(port, "/events/abc", with_id);
    check_error(bad, 400, "bad_id");
    CHECK(bad.header("x-request-id") == "err-42");
    auto m = get_with(port, "/replay/1", with_id);
    check_error(m, 405, "method_not_allowed");
    CHECK(m.header("x-request-id") == "err-42");
    auto big = get_with(port, "/replay/1", with_id, "POST",
                        std::string(70 * 1024, 'x'));
    check_error(big, 413, "body_too_large");
    CHECK(big.header("x-request-id") == "err-42");
    auto h = get_with(port, "/health", with_id);
    CHECK(h.status == 200);
    CHECK(h.header("x-request-id") == "err-42");
    CHECK(generated_id(
      ces::test::http_get(host, port, "/nope").header("x-request-id")));
    auto [text, closed] = raw_exchange(
      port, "HEAD /health HTTP/1.1\r\nHost: x\r\nX-Request-Id: head-1\r\n"
            "Connection: close\r\n\r\n");
    CHECK_THAT(text, Catch::Contains("X-Request-Id: head-1\r\n"));
    CHECK(d.dispatched() == 0);
  }
  SECTION("503 overloaded") {
    test_dispatcher d{0ms};
    d.hold();
    auto o = local_options();
    o.max_in_flight = 1;
    http_server s{o, d.fn()};
    auto f = std::async(std::launch::async, [&] {
      return ces::test::http_get(host, s.port(), "/events/1", 10s);
    });
    for (int i = 0; i < 500 && s.in_flight() < 1; ++i)
      std::this_thread::sleep_for(5ms);
    REQUIRE(s.in_flight() == 1);
    auto r = get_with(s.port(), "/events/2", with_id);
    check_error(r, 503, "overloaded");
    CHECK(r.header("x-request-id") == "err-42");
    d.release();
    CHECK(f.get().status == 200);
  }
  SECTION("504 timeout, 503 dropped, 503 shutting_down") {
    test_dispatcher d;
    d.hold();
    auto o = local_options();
    o.request_timeout = 300ms;
    auto s = std::make_unique<http_server>(o, d.fn());
    auto t = get_with(s->port(), "/dlq", with_id);
    check_error(t, 504, "timeout");
    CHECK(t.header("x-request-id") == "err-42");

    test_dispatcher dropping;
    dropping.drop();
    http_server s2{local_options(), dropping.fn()};
    auto dr = get_with(s2.port(), "/replay/5", with_id, "POST");
    check_error(dr, 503, "dropped");
    CHECK(dr.header("x-request-id") == "err-42");

    auto port = s->port();
    auto f = std::async(std::launch::async, [&] {
      return get_with(port, "/events/1", {{"X-Request-Id", "late-1"}});
    });
    for (int i = 0; i < 500 && s->in_flight() < 1; ++i)
      std::this_thread::sleep_for(5ms);
    REQUIRE(s->in_flight() == 1);
    s->stop();
    auto sd = f.get();
    check_error(sd, 503, "shutting_down");
    CHECK(sd.header("x-request-id") == "late-1");
    d.release();
  }
}

TEST_CASE("a dispatcher's own X-Request-Id header does not duplicate ours",
          "[http_server]") {
  http_server s{local_options(),
                [](std::shared_ptr<pending_request> p, parsed_request) {
                  p->respond(200, "{}",
                             {{"x-request-id", "forged"}, {"X-Other", "1"}});
                }};
  auto [text, closed] = raw_exchange(
    s.port(), "GET /events/1 HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine\r\n"
              "Connection: close\r\n\r\n");
  INFO(text);
  CHECK(text.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK_THAT(text, Catch::Contains("X-Request-Id: mine\r\n"));
  CHECK(request_id_headers(text) == 1);
  CHECK_THAT(text, !Catch::Contains("forged"));
  CHECK_THAT(text, Catch::Contains("X-Other: 1\r\n"));
}

TEST_CASE("request_meta: client address and Authorization as sent",
          "[http_server]") {
  test_dispatcher d{0ms};
  http_server s{local_options(), d.fn()};
  auto port = s.port();
  auto r = get_with(port, "/events/1",
                    {{"Authorization", "Bearer s3cr3t-t0ken"},
                     {"X-Request-Id", "m-1"}});
  CHECK(r.status == 200);
  auto plain = ces::test::http_get(host, port, "/events/2");
  CHECK(plain.status == 200);
  auto metas = d.metas();
  REQUIRE(metas.size() == 2);
  CHECK(metas[0].authorization == "Bearer s3cr3t-t0ken");
  CHECK(metas[0].client_addr == "127.0.0.1");
  CHECK(metas[0].request_id == "m-1");
  CHECK(metas[1].authorization.empty());
  CHECK(metas[1].client_addr == "127.0.0.1");
}

TEST_CASE("request_meta over IPv6: the client's IPv6 address",
          "[http_server]") {
  test_dispatcher d{0ms};
  auto o = local_options();
  o.address = "::1";
  std::unique_ptr<http_server> s;
  try {
    s = std::make_unique<http_server>(o, d.fn());
  } catch (const std::runtime_error& e) {
    WARN("no IPv6 loopback here: " << e.what());
    return;
  }
  auto r = ces::test::curl(
    {"-g", "http://[::1]:" + std::to_string(s->port()) + "/events/1"});
  INFO(r.stderr_text);
  CHECK(r.status == 200);
  REQUIRE(d.metas().size() == 1);
  CHECK(d.metas()[0].client_addr == "::1");
}

TEST_CASE("two Authorization headers are refused with 400 bad_header",
          "[http_server]") {
  test_dispatcher d;
  observations obs;
  auto o = local_options();
  o.observer = obs.fn();
  http_server s{o, d.fn()};
  auto r = get_with(s.port(), "/events/1",
                    {{"Authorization", "Bearer a-secret"},
                     {"authorization", "Basic b3RoZXI6c2VjcmV0"},
                     {"X-Request-Id", "dup-1"}});
  check_error(r, 400, "bad_header");
  CHECK(r.header("x-request-id") == "dup-1");
  // The answer names no credential.
  CHECK_THAT(r.body, !Catch::Contains("a-secret"));
  CHECK_THAT(r.body, !Catch::Contains("b3RoZXI6c2VjcmV0"));
  CHECK(d.dispatched() == 0);
  CHECK(obs.count("event_by_id", 400) == 1);
  // One Authorization header (even empty) is fine.
  CHECK(get_with(s.port(), "/events/1", {{"Authorization", "Bearer x"}})
          .status
        == 200);
}

TEST_CASE("a detached request returns the meta it was given",
          "[http_server]") {
  parsed_request pr;
  pr.kind = route_kind::replay;
  int status = 0;
  auto plain = ces::api::make_detached_request(pr, [&](int st, std::string) {
    status = st;
  });
  CHECK(plain->meta().request_id.empty());
  CHECK(plain->meta().authorization.empty());
  ces::api::request_meta m;
  m.request_id = "det-1";
  m.client_addr = "10.0.0.7";
  m.authorization = "Bearer k";
  auto with = ces::api::make_detached_request(
    pr, [&](int st, std::string) { status = st; }, m);
  CHECK(with->meta().request_id == "det-1");
  CHECK(with->request_id() == "det-1");
  CHECK(with->meta().client_addr == "10.0.0.7");
  CHECK(with->meta().authorization == "Bearer k");
  CHECK(with->respond(202, "{}"));
  CHECK(status == 202);
}

// --- HTTPS ------------------------------------------------------------------

namespace {

struct tls_fixture {
  ces::test::test_pki pki;

  http_server_options options() const {
    auto o = local_options();
    o.tls_cert_file = pki.server_cert;
    o.tls_key_file = pki.server_key;
    return o;
  }

  static std::string url(const std::string& host_part, uint16_t port,
                         const std::string& target) {
    return "https://" + host_part + ":" + std::to_string(port) + target;
  }
};

std::string tls_error_of(const http_server_options& o) {
  test_dispatcher d;
  try {
    http_server s{o, d.fn()};
  } catch (const ces::api::tls_error& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("not a tls_error: ") + e.what();
  }
  return "no error";
}

} // namespace

TEST_CASE("HTTPS: curl with the CA gets answers, without it fails",
          "[http_server]") {
  tls_fixture f;
  test_dispatcher d{0ms};
  http_server s{f.options(), d.fn()};
  CHECK(s.tls());
  auto port = s.port();
  auto health = ces::test::curl(
    {"--cacert", f.pki.ca_cert, f.url("127.0.0.1", port, "/health")});
  INFO(health.stderr_text);
  CHECK(health.exit_code == 0);
  CHECK(health.status == 200);
  CHECK(health.body == ces::api::health_json());
  CHECK(generated_id(health.header("x-request-id")));
  // By name too; a dispatched request with meta, and an error.
  auto ev = ces::test::curl({"--cacert", f.pki.ca_cert, "-H",
                             "X-Request-Id: tls-1", "-H",
                             "Authorization: Bearer over-tls",
                             f.url("localhost", port, "/events/7")});
  INFO(ev.stderr_text);
  CHECK(ev.status == 200);
  CHECK(ev.header("x-request-id") == "tls-1");
  CHECK(nlohmann::json::parse(ev.body)["id"] == 7);
  REQUIRE(d.metas().size() == 1);
  CHECK(d.metas()[0].authorization == "Bearer over-tls");
  CHECK(d.metas()[0].client_addr == "127.0.0.1");
  auto nf = ces::test::curl(
    {"--cacert", f.pki.ca_cert, f.url("127.0.0.1", port, "/nope")});
  CHECK(nf.status == 404);
  // TLS 1.2 and 1.3 both work.
  for (auto v : {"1.2", "1.3"}) {
    auto r = ces::test::curl({"--cacert", f.pki.ca_cert,
                              std::string("--tlsv") + v, "--tls-max", v,
                              f.url("127.0.0.1", port, "/health")});
    INFO("TLS " << v << ": " << r.stderr_text);
    CHECK(r.status == 200);
  }
  // Without the CA: the certificate does not verify (curl exit 60).
  auto untrusted = ces::test::curl({f.url("127.0.0.1", port, "/health")});
  CHECK(untrusted.exit_code == 60);
  CHECK(untrusted.status == 0);
  // Plain HTTP to the HTTPS port: no HTTP answer.
  auto plain = ces::test::http_get(host, port, "/health", 3s);
  CHECK(plain.status == 0);
  // The server keeps serving.
  CHECK(ces::test::curl({"--cacert", f.pki.ca_cert,
                         f.url("127.0.0.1", port, "/health")})
          .status
        == 200);
}

TEST_CASE("HTTPS: TLS 1.1 and below are refused", "[http_server]") {
  tls_fixture f;
  test_dispatcher d;
  http_server s{f.options(), d.fn()};
  // openssl s_client at security level 0 may offer TLS 1.1; the server must
  // not accept it.
  ces::test::spawn_options so;
  so.pipe_stdin = true;
  ces::test::child_process p{
    {"openssl", "s_client", "-connect",
     "127.0.0.1:" + std::to_string(s.port()), "-tls1_1", "-cipher",
     "DEFAULT@SECLEVEL=0", "-CAfile", f.pki.ca_cert},
    so};
  p.close_stdin();
  auto st = p.wait_exit(20s);
  REQUIRE(st.has_value());
  INFO(p.describe());
  CHECK_FALSE(st->success());
  // No cipher agreed: the server answered with a protocol_version alert.
  CHECK_THAT(p.stdout_text(), Catch::Contains("Cipher is (NONE)"));
  // TLS 1.2 from the same client works (the refusal is the version's).
  ces::test::child_process ok{
    {"openssl", "s_client", "-connect",
     "127.0.0.1:" + std::to_string(s.port()), "-tls1_2", "-CAfile",
     f.pki.ca_cert},
    so};
  ok.close_stdin();
  auto st2 = ok.wait_exit(20s);
  REQUIRE(st2.has_value());
  INFO(ok.describe());
  CHECK_THAT(ok.stdout_text(), Catch::Contains("Protocol  : TLSv1.2"));
  CHECK_THAT(ok.stdout_text(), Catch::Contains("Compression: NONE"));
}

TEST_CASE("HTTPS: a certificate or key that cannot serve is a clear error",
          "[http_server]") {
  tls_fixture f;
  auto o = f.options();
  SECTION("missing certificate file") {
    o.tls_cert_file = f.pki.dir + "/nope.pem";
    auto msg = tls_error_of(o);
    CHECK_THAT(msg, Catch::Contains(f.pki.dir + "/nope.pem"));
    CHECK_THAT(msg, Catch::Contains("certificate"));
    CHECK_THAT(msg, Catch::Contains("No such file"));
  }
  SECTION("missing key file") {
    o.tls_key_file = f.pki.dir + "/nope.key";
    auto msg = tls_error_of(o);
    CHECK_THAT(msg, Catch::Contains(f.pki.dir + "/nope.key"));
    CHECK_THAT(msg, Catch::Contains("key"));
  }
  SECTION("not PEM") {
    auto junk = f.pki.dir + "/junk.pem";
    { std::ofstream{junk} << "not a certificate\n"; }
    o.tls_cert_file = junk;
    CHECK_THAT(tls_error_of(o), Catch::Contains(junk));
  }
  SECTION("a certificate given as the key: no key material in the error") {
    o.tls_key_file = f.pki.server_cert;
    auto msg = tls_error_of(o);
    CHECK_THAT(msg, Catch::Contains(f.pki.server_cert));
    CHECK_THAT(msg, !Catch::Contains("BEGIN"));
  }
  SECTION("a key that does not match the certificate") {
    o.tls_key_file = f.pki.other_key;
    auto msg = tls_error_of(o);
    CHECK_THAT(msg, Catch::Contains("mismatch"));
    CHECK_THAT(msg, Catch::Contains(f.pki.other_key));
    CHECK_THAT(msg, !Catch::Contains("BEGIN"));
    CHECK_THROWS_AS(
      ces::api::check_tls_files(f.pki.server_cert, f.pki.other_key),
      ces::api::tls_error);
  }
  SECTION("one without the other") {
    o.tls_key_file.clear();
    test_dispatcher d;
    CHECK_THROWS_AS(http_server(o, d.fn()), std::invalid_argument);
  }
  SECTION("the good pair passes check_tls_files") {
    CHECK_NOTHROW(
      ces::api::check_tls_files(f.pki.server_cert, f.pki.server_key));
  }
}

TEST_CASE("HTTPS: a client that never completes its handshake is cut off",
          "[http_server]") {
  tls_fixture f;
  test_dispatcher d;
  auto o = f.options();
  o.tls_handshake_timeout = 300ms;
  o.max_connections = 3;
  http_server s{o, d.fn()};
  // The server counts a cut-off right after the client sees it closed.
  auto cut_offs = [&s](uint64_t n) {
    for (int i = 0; i < 200 && s.connections().handshake_timeouts < n; ++i)
      std::this_thread::sleep_for(10ms);
    return s.connections().handshake_timeouts;
  };
  SECTION("one silent client") {
    // Sends nothing: RESTinio waits for its ClientHello forever; we do not.
    auto [text, closed] = raw_exchange(s.port(), "", 10s);
    CHECK(closed);
    CHECK(text.empty());
    CHECK(cut_offs(1) == 1);
  }
  SECTION("half a ClientHello") {
    std::string partial("\x16\x03\x01\x02\x00\x01", 6);
    auto [text, closed] = raw_exchange(s.port(), partial, 10s);
    CHECK(closed);
    CHECK(cut_offs(1) == 1);
  }
  SECTION("handshaking connections count against max_connections") {
    idle_clients clients{s.port(), 5};
    auto until = std::chrono::steady_clock::now() + 5s;
    while (s.connections().refused < 2
           && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(10ms);
    CHECK(s.connections().refused == 2);
    // ... until they are cut off: the server serves again.
    until = std::chrono::steady_clock::now() + 10s;
    ces::test::curl_result r;
    do {
      r = ces::test::curl({"--cacert", f.pki.ca_cert, "--max-time", "2",
                           f.url("127.0.0.1", s.port(), "/health")});
    } while (r.status != 200 && std::chrono::steady_clock::now() < until);
    CHECK(r.status == 200);
    CHECK(cut_offs(3) >= 3);
  }
  // A connection past its handshake is not cut off: one idle for three
  // times the handshake timeout before its request still gets the answer.
  auto before = cut_offs(0);
  ces::test::spawn_options so;
  so.pipe_stdin = true;
  ces::test::child_process client{
    {"openssl", "s_client", "-quiet", "-connect",
     "127.0.0.1:" + std::to_string(s.port()), "-CAfile", f.pki.ca_cert},
    so};
  REQUIRE(client.wait_for_line(ces::test::stream::err, "verify return:1",
                               10s));
  std::this_thread::sleep_for(900ms);
  CHECK(client.write_stdin("GET /events/1 HTTP/1.1\r\nHost: x\r\n"
                           "Connection: close\r\n\r\n"));
  auto line = client.wait_for_line(ces::test::stream::out, "HTTP/1.1", 10s);
  INFO(client.describe());
  REQUIRE(line);
  CHECK_THAT(*line, Catch::StartsWith("HTTP/1.1 200 OK"));
  CHECK(s.connections().handshake_timeouts == before);
}

TEST_CASE("HTTPS: stop() with requests pending and connections open",
          "[http_server]") {
  tls_fixture f;
  test_dispatcher d;
  d.hold();
  auto s = std::make_unique<http_server>(f.options(), d.fn());
  auto port = s->port();
  auto pending = std::async(std::launch::async, [&] {
    return ces::test::curl({"--cacert", f.pki.ca_cert, "-H",
                            "X-Request-Id: stop-1",
                            f.url("127.0.0.1", port, "/events/1")});
  });
  for (int i = 0; i < 1000 && s->in_flight() < 1; ++i)
    std::this_thread::sleep_for(10ms);
  REQUIRE(s->in_flight() == 1);
  idle_clients idle{port, 2}; // two connections in their handshake
  auto t0 = std::chrono::steady_clock::now();
  s->stop();
  CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  auto r = pending.get();
  CHECK(r.status == 503);
  CHECK(r.header("x-request-id") == "stop-1");
  CHECK_THAT(r.body, Catch::Contains("shutting_down"));
  s.reset();
  d.release();
}

TEST_CASE("Idempotency-Key: in request_meta for POST, checked, one only",
          "[http_server]") {
  test_dispatcher d{0ms};
  http_server s{local_options(), d.fn()};
  auto port = s.port();
  auto ok = get_with(port, "/replay/1", {{"Idempotency-Key", "retry-1 a"}},
                     "POST");
  CHECK(ok.status == 200);
  // A GET does not read it (nor refuse it).
  auto get = get_with(port, "/events/1",
                      {{"Idempotency-Key", std::string(300, 'k')}});
  CHECK(get.status == 200);
  auto twice = get_with(port, "/replay/1",
                        {{"Idempotency-Key", "a"}, {"idempotency-key", "b"}},
                        "POST");
  check_error(twice, 400, "bad_header");
  for (std::string bad : {std::string(256, 'k'), std::string{"caf\xc3\xa9"},
                          std::string{"tab\there"}}) {
    INFO(bad);
    check_error(get_with(port, "/replay/1", {{"Idempotency-Key", bad}},
                         "POST"),
                400, "bad_idempotency_key");
  }
  auto longest = get_with(port, "/replay/1",
                          {{"Idempotency-Key", std::string(255, 'k')}},
                          "POST");
  CHECK(longest.status == 200);
  auto metas = d.metas();
  REQUIRE(metas.size() == 3);
  CHECK(metas[0].idempotency_key == "retry-1 a");
  CHECK(metas[1].idempotency_key.empty());
  CHECK(metas[2].idempotency_key == std::string(255, 'k'));
}

TEST_CASE("on_answer sees the answer that goes out, whoever sends it",
          "[http_server]") {
  struct seen_answer {
    int status = 0;
    std::string body;
    ces::api::header_list headers;
  };
  std::mutex mtx;
  std::vector<seen_answer> seen;
  std::vector<std::shared_ptr<pending_request>> held;
  bool answer_now = true;
  int refused_observers = 0;
  auto o = local_options();
  o.request_timeout = 300ms;
  http_server s{o, [&](std::shared_ptr<pending_request> p, parsed_request) {
                  bool set = p->on_answer(
                    [&](int status, const std::string& body,
                        const ces::api::header_list& hs) {
                      std::lock_guard<std::mutex> guard{mtx};
                      seen.push_back({status, body, hs});
                    });
                  bool now = false;
                  {
                    std::lock_guard<std::mutex> guard{mtx};
                    refused_observers += set ? 0 : 1;
                    now = answer_now;
                    if (!now)
                      held.push_back(p);
                  }
                  // Outside the lock: the observer takes it.
                  if (now)
                    p->respond(202, "{\"a\":1}", {{"Location", "/jobs/1"}});
                }};
  auto r = ces::test::http_post(host, s.port(), "/replays", "{}");
  CHECK(r.status == 202);
  {
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].status == 202);
    CHECK(seen[0].body == "{\"a\":1}");
    CHECK(seen[0].headers
          == ces::api::header_list{{"Location", "/jobs/1"}});
    answer_now = false;
  }
  // The server's own 504: the observer is told, a later answer is not.
  check_error(ces::test::http_post(host, s.port(), "/replay/3", "{}",
                                   "application/json", 10s),
              504, "timeout");
  std::shared_ptr<pending_request> late;
  {
    std::lock_guard<std::mutex> guard{mtx};
    REQUIRE(seen.size() == 2);
    CHECK(seen[1].status == 504);
    REQUIRE(held.size() == 1);
    late = held.front();
    held.clear();
  }
  CHECK_FALSE(late->respond(200, "{}"));
  CHECK_FALSE(late->on_answer([](int, const std::string&,
                                 const ces::api::header_list&) {}));
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(seen.size() == 2);
  CHECK(refused_observers == 0);
}

TEST_CASE("on_answer is told the answer when the client has gone",
          "[http_server]") {
  std::mutex mtx;
  std::vector<int> seen;
  std::shared_ptr<pending_request> held;
  std::atomic<bool> dispatched{false};
  http_server s{local_options(),
                [&](std::shared_ptr<pending_request> p, parsed_request) {
                  p->on_answer([&](int status, const std::string&,
                                   const ces::api::header_list&) {
                    std::lock_guard<std::mutex> guard{mtx};
                    seen.push_back(status);
                  });
                  std::lock_guard<std::mutex> guard{mtx};
                  held = std::move(p);
                  dispatched = true;
                }};
  // The client sends its request and closes before the answer.
  raw_exchange(s.port(),
               "POST /replay/8 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
               "\r\n",
               200ms);
  for (int i = 0; i < 500 && !dispatched; ++i)
    std::this_thread::sleep_for(5ms);
  REQUIRE(dispatched);
  std::shared_ptr<pending_request> p;
  {
    std::lock_guard<std::mutex> guard{mtx};
    p = std::move(held);
  }
  std::this_thread::sleep_for(50ms); // the connection is closed by now
  CHECK(p->respond(200, "{\"replayed\":true}"));
  std::lock_guard<std::mutex> guard{mtx};
  CHECK(seen == std::vector<int>{200});
}
