// RESTinio 0.6.16 lives here only. The server runs its own asio io_context on
// `threads` threads (RESTinio's default traits: one strand per connection).
//
// Answers written from other threads go through RESTinio's
// response_builder::done(), which dispatches the write onto the connection's
// strand (impl/connection.hpp write_response_parts), so respond() never
// blocks on the network. Lifetime rules that keep that safe:
// * every pending request is registered; stop() answers all of them before
//   the io_context stops, and whoever answers drops the request handle (the
//   connection reference) right away, so no handle outlives the io_context;
// * answers from other threads happen under a shared lock of `gate`; stop()
//   takes it exclusively once to wait for answers being written, and marks
//   the io_context dead, after which respond() writes nothing.
//
// Plain HTTP and HTTPS are two RESTinio server types (traits differ only in
// the socket); a `listener` hides which one runs. Request handles are the same
// type for both, so everything else is shared.
#include "api/server.hpp"

#include "api/idempotency.hpp"
#include "api/json.hpp"

#include <restinio/all.hpp>
#include <restinio/tls.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

namespace ces::api {

namespace {

using clock_type = std::chrono::steady_clock;

/// Bounds open connections without RESTinio's connection count limiter (in
/// 0.6.16 every connection's lifetime monitor points into the acceptor's
/// limiter and uses it from the connection's destructor, and connections
/// still open at shutdown are destroyed with the io_context, after the
/// server and its acceptor: a use after free under AddressSanitizer).
/// Instead RESTinio tells this gate, held by shared_ptr from its settings,
/// of every accepted and closed connection (connection state listener), and
/// asks it about every new one (IP blocker): beyond `max` open connections a
/// new one is denied, i.e. closed at once. So the server never holds more
/// than `max` connection descriptors, and accept() does not run out of them.
///
/// RESTinio reports a connection as accepted only once it is ready to read
/// requests: after the TLS handshake. A connection allowed by the IP blocker
/// and not yet reported is "handshaking" (keyed by its remote endpoint, which
/// is unique among open connections); it counts against `max` too, and the
/// sweep disconnects it when its handshake takes too long (take_stalled).
struct connection_gate {
  size_t max = 0;
  std::atomic<size_t> open{0}; // ids + handshaking
  /// Sockets accept() returned (allowed or denied): the watchdog's sign that
  /// the accept loop makes progress.
  std::atomic<uint64_t> accepts{0};
  std::atomic<uint64_t> refused{0};
  std::mutex mtx;
  std::unordered_set<restinio::connection_id_t> ids; // guarded by mtx
  std::map<restinio::endpoint_t, clock_type::time_point>
    handshaking; // guarded by mtx

  void recount() noexcept {
    open = ids.size() + handshaking.size();
  }

  restinio::ip_blocker::inspection_result_t
  inspect(const restinio::ip_blocker::incoming_info_t& in) noexcept {
    accepts.fetch_add(1);
    try {
      std::lock_guard<std::mutex> guard{mtx};
      if (ids.size() + handshaking.size() < max) {
        handshaking[in.remote_endpoint()] = clock_type::now();
        recount();
        return restinio::ip_blocker::allow();
      }
    } catch (...) {
      // bad_alloc: deny.
    }
    refused.fetch_add(1);
    return restinio::ip_blocker::deny();
  }

  void state_changed(const restinio::connection_state::notice_t& n) noexcept {
    auto cause = n.cause();
    bool accepted =
      restinio::holds_alternative<restinio::connection_state::accepted_t>(
        cause);
    bool closed =
      restinio::holds_alternative<restinio::connection_state::closed_t>(cause);
    try {
      std::lock_guard<std::mutex> guard{mtx};
      if (accepted) {
        handshaking.erase(n.remote_endpoint());
        ids.insert(n.connection_id());
      } else if (closed && ids.erase(n.connection_id()) == 0) {
        // Closed before it was accepted: a failed handshake.
        handshaking.erase(n.remote_endpoint());
      }
      recount();
    } catch (...) {
      // bad_alloc: the count stays as it was.
    }
  }

  /// Removes and returns the connections handshaking since before `t`.
  std::vector<restinio::endpoint_t>
  take_stalled(clock_type::time_point t) noexcept {
    std::vector<restinio::endpoint_t> out;
    try {
      std::lock_guard<std::mutex> guard{mtx};
      for (auto i = handshaking.begin(); i != handshaking.end();)
        if (i->second < t) {
          out.push_back(i->first);
          i = handshaking.erase(i);
        } else {
          ++i;
        }
      recount();
    } catch (...) {
      // bad_alloc: next time.
    }
    return out;
  }
};

struct plain_traits : restinio::default_traits_t {
  using ip_blocker_t = connection_gate;
  using connection_state_listener_t = connection_gate;
};

struct tls_traits : restinio::default_tls_traits_t {
  using ip_blocker_t = connection_gate;
  using connection_state_listener_t = connection_gate;
};

/// A RESTinio server of either traits.
struct listener {
  virtual ~listener() = default;
  virtual void open_sync() = 0;
  virtual void close_async(std::function<void()> ok,
                           std::function<void(std::exception_ptr)> failed) = 0;
};

template <class Traits>
struct restinio_listener final : listener {
  restinio::http_server_t<Traits> server;

  restinio_listener(asio::io_context& io,
                    restinio::server_settings_t<Traits> settings)
    : server(restinio::external_io_context(io), std::move(settings)) {
  }
  void open_sync() override {
    server.open_sync();
  }
  void close_async(std::function<void()> ok,
                   std::function<void(std::exception_ptr)> failed) override {
    server.close_async(std::move(ok), std::move(failed));
  }
};

/// Shuts down (both directions) this process's sockets on `local_port` whose
/// peer is one of `peers`: RESTinio's handshake read then fails and it
/// closes the connection itself. The descriptors are found in /proc/self/fd
/// (RESTinio does not show a connection's socket before the handshake); a
/// descriptor closed and reused meanwhile does not match its peer. Returns
/// how many were shut down.
size_t shutdown_peers(const std::vector<restinio::endpoint_t>& peers,
                      uint16_t local_port) noexcept {
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr)
    return 0;
  size_t n = 0;
  while (auto* e = ::readdir(dir)) {
    char* end = nullptr;
    long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(dir))
      continue;
    restinio::endpoint_t local, peer;
    socklen_t ll = static_cast<socklen_t>(local.capacity());
    socklen_t pl = static_cast<socklen_t>(peer.capacity());
    if (::getsockname(static_cast<int>(fd), local.data(), &ll) != 0
        || ::getpeername(static_cast<int>(fd), peer.data(), &pl) != 0)
      continue;
    auto af = local.data()->sa_family;
    if ((af != AF_INET && af != AF_INET6) || peer.data()->sa_family != af)
      continue;
    try {
      local.resize(ll);
      peer.resize(pl);
    } catch (...) {
      continue;
    }
    if (local.port() != local_port
        || std::find(peers.begin(), peers.end(), peer) == peers.end())
      continue;
    if (::shutdown(static_cast<int>(fd), SHUT_RDWR) == 0)
      ++n;
  }
  ::closedir(dir);
  return n;
}

/// TLS 1.2 ciphers (TLS 1.3 has only good ones): forward secrecy and AEAD.
constexpr const char* tls12_ciphers =
  "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
  "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
  "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

void check_readable(const char* what, const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    throw tls_error(std::string("cannot read the TLS ") + what + " file '"
                    + path + "': " + std::strerror(errno));
  std::fclose(f);
}

/// The server's TLS context; throws tls_error naming the file at fault.
std::shared_ptr<asio::ssl::context>
make_tls_context(const std::string& cert_file, const std::string& key_file) {
  check_readable("certificate", cert_file);
  check_readable("key", key_file);
  using ctx_t = asio::ssl::context;
  auto ctx = std::make_shared<ctx_t>(ctx_t::tls_server);
  ctx->set_options(ctx_t::default_workarounds | ctx_t::no_sslv2
                   | ctx_t::no_sslv3 | ctx_t::no_tlsv1 | ctx_t::no_tlsv1_1
                   | ctx_t::no_compression | ctx_t::single_dh_use);
  auto* native = ctx->native_handle();
  if (SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION) != 1
      || SSL_CTX_set_cipher_list(native, tls12_ciphers) != 1) {
    ERR_clear_error();
    throw tls_error("cannot set up TLS (OpenSSL refused the protocol or "
                    "cipher settings)");
  }
  // A key with a passphrase must not make OpenSSL prompt on the terminal:
  // an empty passphrase fails to decrypt it instead.
  ctx->set_password_callback(
    [](std::size_t, ctx_t::password_purpose) { return std::string(); });
  asio::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    ERR_clear_error();
    throw tls_error("cannot use the TLS certificate file '" + cert_file
                    + "' (a PEM certificate chain is needed): "
                    + ec.message());
  }
  ctx->use_private_key_file(key_file, ctx_t::pem, ec);
  if (ec) {
    ERR_clear_error();
    throw tls_error("cannot use the TLS key file '" + key_file
                    + "' (a PEM private key without passphrase is needed): "
                    + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    ERR_clear_error();
    throw tls_error("the TLS key file '" + key_file
                    + "' does not match the certificate in '" + cert_file
                    + "'");
  }
  return ctx;
}

/// The client's address as text: IPv4 for an IPv4-mapped IPv6 address.
std::string client_address(const restinio::endpoint_t& ep) {
  auto addr = ep.address();
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    return asio::ip::make_address_v4(asio::ip::v4_mapped, addr.to_v6())
      .to_string();
  return addr.to_string();
}

/// The request's meta; `authorizations` and `idempotency_keys` get the
/// number of Authorization and Idempotency-Key headers.
request_meta read_meta(const restinio::request_handle_t& req,
                       int& authorizations, int& idempotency_keys) {
  request_meta m;
  const auto& h = req->header();
  authorizations = 0;
  h.for_each_value_of(restinio::http_field::authorization, [&](auto v) {
    if (authorizations++ == 0)
      m.authorization.assign(v.data(), v.size());
    return restinio::http_header_fields_t::continue_enumeration();
  });
  idempotency_keys = 0;
  h.for_each_value_of("Idempotency-Key", [&](auto v) {
    if (idempotency_keys++ == 0)
      m.idempotency_key.assign(v.data(), v.size());
    return restinio::http_header_fields_t::continue_enumeration();
  });
  // (The values are views of temporaries: copy, do not keep views.)
  int ids = 0;
  std::string client_id;
  h.for_each_value_of("X-Request-Id", [&](auto v) {
    if (ids++ == 0)
      client_id.assign(v.data(), v.size());
    return restinio::http_header_fields_t::continue_enumeration();
  });
  m.request_id = ids == 1 && valid_request_id(client_id)
                   ? std::move(client_id)
                   : make_request_id();
  m.client_addr = client_address(req->remote_endpoint());
  return m;
}

bool equals_caseless(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size()
         && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
              return std::tolower(static_cast<unsigned char>(x))
                     == std::tolower(static_cast<unsigned char>(y));
            });
}

const char* reason_phrase(int status) noexcept {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 400 ? "OK" : "Error";
  }
}

double seconds_since(clock_type::time_point t) noexcept {
  return std::chrono::duration<double>(clock_type::now() - t).count();
}

} // namespace

/// Shared by the server, its request handler and every pending request.
struct server_core : std::enable_shared_from_this<server_core> {
  http_server_options opts;
  http_server::dispatcher dispatch;

  std::mutex mtx; // pending, next_id, stopping
  std::unordered_map<uint64_t, std::weak_ptr<pending_request::state>> pending;
  uint64_t next_id = 1;
  bool stopping = false;

  std::shared_mutex gate;
  bool io_alive = true; // guarded by gate

  /// Responses handed to RESTinio whose write has not completed.
  std::atomic<int64_t> writes{0};

  void observe(route_kind k, int status, clock_type::time_point start) noexcept {
    if (!opts.observer)
      return;
    try {
      opts.observer(k, status, seconds_since(start));
    } catch (...) {
      // An observer must not break answering.
    }
  }

  /// Hands one response to RESTinio (any thread while the io_context runs),
  /// with X-Request-Id: `request_id` (a caller's own X-Request-Id is dropped).
  void write(const restinio::request_handle_t& req, int status,
             std::string body, const header_list& headers, bool head,
             std::string_view request_id) noexcept {
    writes.fetch_add(1);
    bool queued = false;
    try {
      restinio::http_status_line_t line{
        restinio::http_status_code_t{static_cast<uint16_t>(status)},
        reason_phrase(status)};
      auto done = [self = shared_from_this()](const asio::error_code&) {
        self->writes.fetch_sub(1);
      };
      auto add_headers = [&](auto& resp) {
        resp.append_header(restinio::http_field::content_type,
                           "application/json");
        resp.append_header(restinio::http_field::cache_control, "no-store");
        if (!request_id.empty())
          resp.append_header("X-Request-Id", std::string(request_id));
        for (auto& [name, value] : headers)
          if (!equals_caseless(name, "X-Request-Id"))
            resp.append_header(name, value);
      };
      if (head) {
        auto resp =
          req->create_response<restinio::user_controlled_output_t>(line);
        add_headers(resp);
        resp.set_content_length(body.size());
        queued = true;
        resp.done(done);
      } else {
        auto resp = req->create_response(line);
        add_headers(resp);
        resp.set_body(std::move(body));
        queued = true;
        resp.done(done);
      }
    } catch (...) {
      if (!queued)
        writes.fetch_sub(1);
      // Otherwise RESTinio owns the callback (it runs it on failure too).
    }
  }

  void write_error(const restinio::request_handle_t& req, int status,
                   std::string_view code, std::string_view message, bool head,
                   std::string_view request_id,
                   const header_list& headers = {}) noexcept {
    try {
      write(req, status, error_json(code, message), headers, head,
            request_id);
    } catch (...) {
      // bad_alloc building the body: nothing sensible left to send.
    }
  }
};

struct pending_request::state {
  std::shared_ptr<server_core> core;
  restinio::request_handle_t req; // reset by whoever answers
  uint64_t id = 0;
  parsed_request request;
  request_meta meta;
  clock_type::time_point start;
  clock_type::time_point deadline;
  std::atomic<bool> done{false};
  /// Set for detached requests (make_detached_request): receives the answer
  /// instead of a connection.
  std::function<void(int, std::string)> sink;
  /// pending_request::on_answer(); guarded by observer_mtx.
  std::mutex observer_mtx;
  answer_observer observer;

  /// Answers unless already answered. Thread-safe.
  bool respond(int status, std::string body, const header_list& headers) noexcept {
    answer_observer told;
    {
      std::lock_guard<std::mutex> guard{observer_mtx};
      if (done.exchange(true))
        return false;
      told = std::move(observer);
    }
    if (told) {
      try {
        told(status, body, headers);
      } catch (...) {
        // An observer must not break answering.
      }
    }
    if (sink) {
      try {
        sink(status, std::move(body));
      } catch (...) {
        // A test sink must not take the caller down.
      }
      return true;
    }
    std::shared_lock<std::shared_mutex> lock{core->gate};
    // Bookkeeping first: once the client has the answer, it is done.
    {
      std::lock_guard<std::mutex> guard{core->mtx};
      core->pending.erase(id);
    }
    core->observe(request.kind, status, start);
    if (core->io_alive)
      core->write(req, status, std::move(body), headers, request.head,
                  meta.request_id);
    req.reset();
    return true;
  }
};

pending_request::pending_request(std::shared_ptr<state> s) noexcept
  : state_(std::move(s)) {
}

pending_request::~pending_request() {
  if (state_ && !state_->done.load())
    state_->respond(503,
                    error_json("dropped",
                               "the request was dropped before it was "
                               "answered (an internal component stopped)"),
                    {});
}

bool pending_request::respond(int status, std::string json_body,
                              const header_list& headers) noexcept {
  return state_->respond(status, std::move(json_body), headers);
}

bool pending_request::answered() const noexcept {
  return state_->done.load();
}

bool pending_request::on_answer(answer_observer f) {
  std::lock_guard<std::mutex> guard{state_->observer_mtx};
  if (state_->done.load())
    return false;
  state_->observer = std::move(f);
  return true;
}

const parsed_request& pending_request::request() const noexcept {
  return state_->request;
}

const request_meta& pending_request::meta() const noexcept {
  return state_->meta;
}

const std::string& pending_request::request_id() const noexcept {
  return state_->meta.request_id;
}

std::chrono::steady_clock::duration pending_request::age() const noexcept {
  return clock_type::now() - state_->start;
}

std::shared_ptr<pending_request>
make_detached_request(parsed_request request,
                      std::function<void(int status, std::string body)> sink,
                      request_meta meta) {
  auto st = std::make_shared<pending_request::state>();
  st->request = request;
  st->meta = std::move(meta);
  st->start = clock_type::now();
  st->deadline = st->start;
  st->sink = std::move(sink);
  return std::make_shared<pending_request>(std::move(st));
}

struct http_server::impl {
  std::shared_ptr<server_core> core = std::make_shared<server_core>();
  // Declaration order is destruction order in reverse: the io_context goes
  // last, after the RESTinio server and the timer that use it.
  asio::io_context io{};
  std::unique_ptr<asio::executor_work_guard<asio::io_context::executor_type>>
    work;
  std::unique_ptr<asio::steady_timer> sweep_timer;
  std::unique_ptr<listener> server;
  bool tls = false;
  std::atomic<uint64_t> handshake_timeouts{0};
  std::vector<std::thread> threads;
  std::atomic<uint16_t> port{0};
  std::mutex stop_mtx;
  bool stopped = false;
  std::shared_ptr<connection_gate> conns = std::make_shared<connection_gate>();

  // Accept watchdog, on the sweep timer. RESTinio 0.6.16 ends its accept
  // loop for good on the first accept error (impl/acceptor.hpp: the
  // async_accept handler does nothing unless the error code is empty): after
  // one EMFILE the server would never accept again. The gate keeps our own
  // connections below the descriptor limit, but the rest of the process may
  // still exhaust it; so when a connection waits in the listen queue and
  // accept() has taken none for a while, the watchdog closes and reopens
  // the acceptor (a fresh accept loop; the waiting connections are reset,
  // open ones are kept).
  std::atomic<int> listen_fd{-1};  // -1: not listening
  std::atomic<bool> reopening{false};
  uint64_t seen_accepts = 0;       // sweep timer only
  int stalled_ticks = 0;           // sweep timer only
  std::atomic<uint64_t> reopens{0};

  /// True when a connection is waiting to be accepted.
  bool connection_waiting() const noexcept {
    auto fd = listen_fd.load();
    if (fd < 0)
      return false;
    pollfd p{fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
  }

  /// Runs on every sweep tick.
  void watch_accepts() {
    if (reopening.load())
      return;
    auto accepts = conns->accepts.load();
    bool stuck = listen_fd.load() < 0 // a reopen failed: try again
                 || (accepts == seen_accepts && connection_waiting());
    seen_accepts = accepts;
    stalled_ticks = stuck ? stalled_ticks + 1 : 0;
    // About 0.75 s without progress (0.25 s ticks): not a busy moment.
    if (stalled_ticks < 3)
      return;
    stalled_ticks = 0;
    {
      std::lock_guard<std::mutex> guard{core->mtx};
      if (core->stopping)
        return;
    }
    reopening = true;
    // close_async runs on the acceptor's open/close strand, as stop()'s does,
    // so the two never interleave; the callback runs on that strand too.
    auto again = [this] {
      listen_fd = -1;
      bool stopping;
      {
        std::lock_guard<std::mutex> guard{core->mtx};
        stopping = core->stopping;
      }
      if (!stopping) {
        try {
          server->open_sync(); // the post-bind hook sets listen_fd
          reopens.fetch_add(1);
        } catch (...) {
          // Still no descriptor (EMFILE): the next ticks try again.
        }
      }
      reopening = false;
    };
    server->close_async(again, [again](std::exception_ptr) { again(); });
  }

  /// Disconnects connections whose TLS handshake takes too long.
  void watch_handshakes() {
    auto stalled = conns->take_stalled(clock_type::now()
                                       - core->opts.tls_handshake_timeout);
    if (!stalled.empty())
      handshake_timeouts.fetch_add(shutdown_peers(stalled, port.load()));
  }

  clock_type::duration sweep_interval() const {
    auto t = core->opts.request_timeout / 4;
    return std::clamp<clock_type::duration>(t, std::chrono::milliseconds(10),
                                            std::chrono::milliseconds(250));
  }

  /// Answers 504 to requests past their deadline; re-arms itself.
  void schedule_sweep() {
    sweep_timer->expires_after(sweep_interval());
    sweep_timer->async_wait([this](const asio::error_code& ec) {
      if (ec)
        return; // cancelled: stopping
      std::vector<std::shared_ptr<pending_request::state>> late;
      auto now = clock_type::now();
      {
        std::lock_guard<std::mutex> guard{core->mtx};
        for (auto& [id, weak] : core->pending)
          if (auto s = weak.lock(); s && s->deadline <= now)
            late.push_back(std::move(s));
      }
      for (auto& s : late)
        s->respond(504,
                   error_json("timeout",
                              "no answer within "
                                + std::to_string(
                                  core->opts.request_timeout.count())
                                + " ms"),
                   {});
      late.clear();
      watch_accepts();
      watch_handshakes();
      schedule_sweep();
    });
  }

  restinio::request_handling_status_t handle(restinio::request_handle_t req) {
    auto start = clock_type::now();
    auto& c = *core;
    const auto& hdr = req->header();
    std::string_view method = hdr.method().c_str();
    bool head = method == "HEAD";
    auto routed = route(method, hdr.request_target(), req->body().size(),
                        c.opts.routes);
    int authorizations = 0;
    int idempotency_keys = 0;
    auto meta = read_meta(req, authorizations, idempotency_keys);
    if (!routed.ok()) {
      header_list extra;
      if (!routed.error.allow.empty())
        extra.emplace_back("Allow", routed.error.allow);
      c.observe(routed.kind, routed.error.status, start);
      c.write_error(req, routed.error.status, routed.error.code,
                    routed.error.message, head, meta.request_id, extra);
      return restinio::request_accepted();
    }
    auto& pr = routed.request;
    if (authorizations > 1) {
      c.observe(pr.kind, 400, start);
      c.write_error(req, 400, "bad_header",
                    "more than one Authorization header", head,
                    meta.request_id);
      return restinio::request_accepted();
    }
    if (method == "POST" && idempotency_keys > 1) {
      c.observe(pr.kind, 400, start);
      c.write_error(req, 400, "bad_header",
                    "more than one Idempotency-Key header", head,
                    meta.request_id);
      return restinio::request_accepted();
    }
    if (method == "POST" && idempotency_keys == 1
        && !valid_idempotency_key(meta.idempotency_key)) {
      c.observe(pr.kind, 400, start);
      c.write_error(req, 400, "bad_idempotency_key",
                    "Idempotency-Key must be 1 to 255 printable ASCII "
                    "characters",
                    head, meta.request_id);
      return restinio::request_accepted();
    }
    if (method != "POST")
      meta.idempotency_key.clear();
    // Bodies matter to POST routes only (bounded by max_body_bytes).
    if (method == "POST")
      pr.body = req->body();
    if (pr.kind == route_kind::health && c.opts.serve_health) {
      c.observe(pr.kind, 200, start);
      c.write(req, 200, health_json(), {}, pr.head, meta.request_id);
      return restinio::request_accepted();
    }
    auto st = std::make_shared<pending_request::state>();
    st->core = core;
    st->req = req;
    st->request = pr;
    st->meta = std::move(meta);
    st->start = start;
    st->deadline = start + c.opts.request_timeout;
    const char* refused = nullptr;
    {
      std::lock_guard<std::mutex> guard{c.mtx};
      if (c.stopping)
        refused = "shutting_down";
      else if (c.pending.size() >= c.opts.max_in_flight)
        refused = "overloaded";
      else {
        st->id = c.next_id++;
        c.pending.emplace(st->id, st);
      }
    }
    if (refused != nullptr) {
      st->done = true; // never registered: nothing to answer later
      st->req.reset();
      bool overload = refused[0] == 'o';
      c.observe(pr.kind, 503, start);
      c.write_error(req, 503, refused,
                    overload ? "too many requests in progress (limit "
                                 + std::to_string(c.opts.max_in_flight)
                                 + "); retry later"
                             : std::string("the server is shutting down"),
                    pr.head, st->meta.request_id, {{"Retry-After", "1"}});
      return restinio::request_accepted();
    }
    auto handle = std::make_shared<pending_request>(st);
    st.reset();
    try {
      c.dispatch(handle, pr);
    } catch (const std::exception& e) {
      handle->respond(500, error_json("internal", std::string(
                                                    "cannot dispatch: ")
                                                    + e.what()));
    } catch (...) {
      handle->respond(500, error_json("internal", "cannot dispatch"));
    }
    return restinio::request_accepted();
  }

  /// The settings both server types share.
  template <class Traits>
  restinio::server_settings_t<Traits> settings_for() {
    auto& o = core->opts;
    auto settings = restinio::server_settings_t<Traits>{};
    settings.address(o.address)
      .port(o.port)
      .request_handler(
        [this](restinio::request_handle_t req) { return handle(std::move(req)); })
      .incoming_http_msg_limits(
        restinio::incoming_http_msg_limits_t{}.max_body_size(
          std::max(o.max_read_body_bytes, o.routes.max_body_bytes)))
      // RESTinio closes a connection whose request is unanswered this long:
      // leave our 504 time to go first.
      .handle_request_timeout(o.request_timeout + std::chrono::seconds(5))
      .ip_blocker(conns)
      .connection_state_listener(conns)
      .acceptor_post_bind_hook([this](asio::ip::tcp::acceptor& a) {
        auto known = port.load();
        if (known != 0 && a.local_endpoint().port() != known) {
          // The watchdog reopens a server started on port 0: RESTinio binds
          // port 0 again; keep the port the clients know.
          auto ep = a.local_endpoint();
          ep.port(known);
          a.close();
          a.open(ep.protocol());
          a.set_option(asio::socket_base::reuse_address(true));
          a.bind(ep);
        }
        port = a.local_endpoint().port();
        listen_fd = a.native_handle();
      });
    if (o.address.find(':') != std::string::npos)
      settings.protocol(asio::ip::tcp::v6());
    return settings;
  }

  void start() {
    auto& o = core->opts;
    conns->max = effective_max_connections(o.max_connections);
    tls = !o.tls_cert_file.empty();
    if (tls) {
      auto settings = settings_for<tls_traits>();
      settings.tls_context(make_tls_context(o.tls_cert_file, o.tls_key_file));
      server = std::make_unique<restinio_listener<tls_traits>>(
        io, std::move(settings));
    } else {
      server = std::make_unique<restinio_listener<plain_traits>>(
        io, settings_for<plain_traits>());
    }
    try {
      server->open_sync(); // binds and listens now; accepts once io runs
    } catch (const std::exception& e) {
      server.reset();
      throw std::runtime_error(std::string("cannot serve ")
                               + (tls ? "HTTPS" : "HTTP") + " on "
                               + o.address + ":"
                               + std::to_string(o.port) + ": " + e.what());
    }
    work = std::make_unique<
      asio::executor_work_guard<asio::io_context::executor_type>>(
      io.get_executor());
    sweep_timer = std::make_unique<asio::steady_timer>(io);
    schedule_sweep();
    for (size_t i = 0; i < o.threads; ++i)
      threads.emplace_back([this] {
        for (;;) {
          try {
            io.run();
            return;
          } catch (...) {
            // A throwing handler must not take the server down; keep serving.
          }
        }
      });
  }

  void stop() {
    std::lock_guard<std::mutex> stop_guard{stop_mtx};
    if (stopped)
      return;
    stopped = true;
    // 1. No new dispatches (nor acceptor reopens); answer the pending ones.
    std::vector<std::shared_ptr<pending_request::state>> left;
    {
      std::lock_guard<std::mutex> guard{core->mtx};
      core->stopping = true;
      listen_fd = -1;
      for (auto& [id, weak] : core->pending)
        if (auto s = weak.lock())
          left.push_back(std::move(s));
    }
    for (auto& s : left)
      s->respond(503,
                 error_json("shutting_down", "the server is shutting down"),
                 {});
    left.clear();
    // 2. Stop accepting (on the acceptor's executor).
    auto closed = std::make_shared<std::promise<void>>();
    auto closed_f = closed->get_future();
    server->close_async([closed] { closed->set_value(); },
                        [closed](std::exception_ptr) { closed->set_value(); });
    closed_f.wait_for(std::chrono::seconds(2));
    // 3. Give the answers a moment to be written.
    auto until = clock_type::now() + std::chrono::milliseconds(500);
    while (core->writes.load() > 0 && clock_type::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    // 4. From now on respond() writes nothing; wait for writers in progress.
    {
      std::unique_lock<std::shared_mutex> lock{core->gate};
      core->io_alive = false;
    }
    // 5. Stop the threads.
    asio::post(io, [this] { sweep_timer->cancel(); });
    work.reset();
    io.stop();
    for (auto& t : threads)
      t.join();
    threads.clear();
    server.reset(); // close_sync(): already closed
    sweep_timer.reset();
  }
};

http_server::http_server(http_server_options opts, dispatcher dispatch)
  : impl_(std::make_unique<impl>()) {
  if (!dispatch)
    throw std::invalid_argument("http_server: no dispatcher");
  if (opts.threads == 0)
    throw std::invalid_argument("http_server: threads must be at least 1");
  if (opts.max_in_flight == 0)
    throw std::invalid_argument("http_server: max_in_flight must be at least 1");
  if (opts.request_timeout <= std::chrono::milliseconds::zero())
    throw std::invalid_argument("http_server: request_timeout must be > 0");
  if (opts.tls_cert_file.empty() != opts.tls_key_file.empty())
    throw std::invalid_argument(
      "http_server: tls_cert_file and tls_key_file go together");
  if (opts.tls_handshake_timeout <= std::chrono::milliseconds::zero())
    throw std::invalid_argument(
      "http_server: tls_handshake_timeout must be > 0");
  impl_->core->opts = std::move(opts);
  impl_->core->dispatch = std::move(dispatch);
  impl_->start();
}

http_server::~http_server() {
  impl_->stop();
}

void http_server::stop() {
  impl_->stop();
}

uint16_t http_server::port() const noexcept {
  return impl_->port.load();
}

bool http_server::tls() const noexcept {
  return impl_->tls;
}

void check_tls_files(const std::string& cert_file,
                     const std::string& key_file) {
  make_tls_context(cert_file, key_file);
}

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
           || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':'
           || c == '-';
  });
}

std::string make_request_id() {
  // Request ids are not secrets: a fast generator per thread, seeded from
  // the system's CSPRNG, makes them unpredictable enough and unique.
  thread_local std::mt19937_64 gen = [] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64{seq};
  }();
  static constexpr char hex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int half = 0; half < 2; ++half) {
    auto x = gen();
    for (int i = 0; i < 16; ++i, x >>= 4)
      out[half * 16 + i] = hex[x & 0xf];
  }
  return out;
}

http_server::connection_stats http_server::connections() const noexcept {
  connection_stats x;
  x.open = impl_->conns->open.load();
  x.max = impl_->conns->max;
  x.refused = impl_->conns->refused.load();
  x.acceptor_reopens = impl_->reopens.load();
  x.handshake_timeouts = impl_->handshake_timeouts.load();
  return x;
}

size_t effective_max_connections(size_t wanted) noexcept {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY)
    return wanted;
  auto reserve = static_cast<rlim_t>(fd_reserve);
  auto room = r.rlim_cur > 2 * reserve ? r.rlim_cur - reserve : r.rlim_cur / 2;
  return std::max<size_t>(1, std::min<size_t>(wanted, room));
}

fd_limits raise_fd_limit() noexcept {
  fd_limits x;
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0)
    return x;
  x.before = r.rlim_cur;
  x.hard = r.rlim_max;
  if (r.rlim_cur != r.rlim_max) {
    auto wanted = r;
    wanted.rlim_cur = r.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &wanted) == 0)
      r = wanted;
  }
  x.after = r.rlim_cur;
  return x;
}

size_t http_server::in_flight() const {
  std::lock_guard<std::mutex> guard{impl_->core->mtx};
  return impl_->core->pending.size();
}

} // namespace ces::api
