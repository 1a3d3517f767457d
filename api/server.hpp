// The operator API's HTTP server (RESTinio 0.6.16 inside server.cpp only:
// this header is plain C++ so that actors can include it cheaply).
//
// For every request the server runs route() (api/routes.hpp):
// * errors (400/404/405/413) are answered at once, on the asio thread, with
//   error_json() bodies; GET /health is answered at once too (serve_health);
// * beyond max_in_flight unanswered requests it answers 503 `overloaded`
//   (Retry-After: 1) at once, without queueing;
// * every other request goes to the dispatcher as a pending_request plus its
//   parsed_request. The dispatcher must not block (e.g. `anon_send` the pair
//   to the HTTP-bridge actor and return); the answer comes later, from any
//   thread, through pending_request::respond().
// No request is left without an answer: a pending_request destroyed
// unanswered answers 503 `dropped` (an actor died with it); one still
// unanswered after request_timeout answers 504 `timeout`; stop() answers the
// remaining ones 503 `shutting_down`.
//
// Connections are bounded (max_connections, itself kept below the
// descriptor limit by effective_max_connections()): a connection beyond the
// bound is closed at once, without an answer. Not with RESTinio 0.6.16's own
// connection count limiter, which is used after free when the server stops
// with connections open (seen with AddressSanitizer), but with an IP blocker
// and a connection state listener that count (server.cpp).
// RESTinio 0.6.16 stops accepting for good after one failed accept()
// (EMFILE); a watchdog reopens the acceptor when a connection waits and none
// was accepted for about 0.75 s, so the server accepts again once
// descriptors are free (connections waiting at that moment are reset).
// Requests in flight are bounded too (max_in_flight).
//
// Every request gets a request_meta (pending_request::meta()): its request id
// (the client's X-Request-Id when it is 1 to 128 of [A-Za-z0-9._:-], else a
// generated one: 32 lowercase hex characters), the client's address and the
// raw Authorization header. Every answer the server writes carries
// X-Request-Id. A request with more than one Authorization header is
// answered 400 `bad_header` at once. A POST with more than one
// Idempotency-Key header is 400 `bad_header` too, one with an invalid value
// (api/idempotency.hpp) 400 `bad_idempotency_key`.
//
// TLS: with tls_cert_file and tls_key_file the server speaks HTTPS only
// (TLS 1.2 and 1.3, ECDHE AEAD ciphers in TLS 1.2, no compression). A client
// that has not completed the handshake within tls_handshake_timeout is
// disconnected (RESTinio 0.6.16 itself never times a handshake out), and
// connections in their handshake count against max_connections.
//
// HEAD requests (GET routes only, see routes.hpp) are answered with the
// status, headers and Content-Length of the GET answer, without the body.
//
// Bodies: up to max_body_bytes are accepted (and ignored by GET routes).
// Larger bodies up to max_read_body_bytes are read and answered 413
// `body_too_large` (JSON). RESTinio's own limit (incoming_http_msg_limits
// max_body_size) is set to max_read_body_bytes: RESTinio 0.6.16 enforces it
// inside its http_parser callbacks (a Content-Length above it fails at the end
// of the headers, a chunked body when it grows past it) as a parse error,
// which closes the connection WITHOUT any response -- there is no hook to
// answer it -- so a client sending more than max_read_body_bytes sees the
// connection closed (or reset while it is still sending).
#pragma once

#include "api/routes.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ces::api {

/// Extra response headers: (name, value) pairs.
using header_list = std::vector<std::pair<std::string, std::string>>;

/// What the server knows of a request besides its route.
struct request_meta {
  /// The client's X-Request-Id if valid (1..128 of [A-Za-z0-9._:-]), else
  /// generated (32 lowercase hex characters). Echoed as X-Request-Id.
  std::string request_id;
  /// The client's IP address, without port ("127.0.0.1", "::1"; an
  /// IPv4-mapped IPv6 address is given as IPv4).
  std::string client_addr;
  /// The raw Authorization header value, empty if none. A SECRET: never log
  /// it, never put it in an error or an answer.
  std::string authorization;
  /// POST requests: the Idempotency-Key header (valid_idempotency_key(),
  /// api/idempotency.hpp), empty if none. Not read for other methods.
  std::string idempotency_key;
};

/// True if `id` is a valid client X-Request-Id: 1 to 128 characters of
/// [A-Za-z0-9._:-].
bool valid_request_id(std::string_view id) noexcept;

/// A fresh request id: 32 lowercase hex characters (128 bits from a
/// per-thread generator seeded from std::random_device). Thread-safe.
std::string make_request_id();

/// An accepted request waiting for its answer. Created by http_server only;
/// hold it by shared_ptr (pass it on to actors). Thread-safe.
class pending_request {
public:
  struct state; // server.cpp

  /// Answers 503 {"error":"dropped",...} if nobody answered.
  ~pending_request();

  pending_request(const pending_request&) = delete;
  pending_request& operator=(const pending_request&) = delete;

  /// Sends the answer: `status` with `json_body` (Content-Type:
  /// application/json) and `headers`. The first call wins; later calls (and
  /// calls after the server answered it with 504 or 503 itself) do nothing
  /// and return false. Never blocks on the network, never throws.
  bool respond(int status, std::string json_body,
               const header_list& headers = {}) noexcept;

  /// True once answered (by anyone).
  bool answered() const noexcept;

  /// Told the answer that goes out (status, JSON body, extra headers),
  /// whoever sends it: respond(), the server's 504 `timeout` or 503
  /// `shutting_down`, the destructor's 503 `dropped`. Called once, on the
  /// answering thread, before the answer is written (so also when the
  /// client has gone). Must be quick and must not throw.
  using answer_observer = std::function<void(
    int status, const std::string& body, const header_list& headers)>;

  /// Sets the observer (at most one; a later call replaces it). False, and
  /// `f` is never called, when the request was answered already.
  bool on_answer(answer_observer f);

  /// The request as routed.
  const parsed_request& request() const noexcept;

  /// Request id, client address, Authorization header.
  const request_meta& meta() const noexcept;

  /// meta().request_id.
  const std::string& request_id() const noexcept;

  /// Time since the server received the request.
  std::chrono::steady_clock::duration age() const noexcept;

  /// For the server.
  explicit pending_request(std::shared_ptr<state> s) noexcept;

private:
  std::shared_ptr<state> state_;
};

/// A request that belongs to no connection: its answer goes to `sink`
/// (status and JSON body), once. For tests of code that answers requests, and
/// for internal callers. `meta` is returned by meta() as given.
std::shared_ptr<pending_request>
make_detached_request(parsed_request request,
                      std::function<void(int status, std::string body)> sink,
                      request_meta meta = {});

/// A TLS certificate or key that cannot be used (missing, unreadable, not
/// PEM, key not matching the certificate). The message names the file, never
/// its content.
class tls_error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

/// Loads `cert_file` (PEM chain) and `key_file` (PEM key) as the server
/// would, and throws tls_error if they cannot serve. For a check at start,
/// before anything else runs.
void check_tls_files(const std::string& cert_file,
                     const std::string& key_file);

struct http_server_options {
  /// Listen address: IPv4/IPv6 literal or "localhost".
  std::string address = "0.0.0.0";
  /// Listen port; 0 lets the kernel choose (see http_server::port()).
  uint16_t port = 9106;
  /// asio threads serving connections (RESTinio runs no handler code of ours
  /// that blocks).
  size_t threads = 2;
  /// Requests handed to the dispatcher and not yet answered; beyond it new
  /// ones get 503 `overloaded`.
  size_t max_in_flight = 64;
  /// Open connections; beyond it a new connection is closed at once. The
  /// server uses effective_max_connections() of it.
  size_t max_connections = 512;
  /// route() limits, including max_body_bytes (default 64 KiB).
  route_options routes;
  /// Bodies up to this size are read and answered 413 in JSON; beyond it
  /// RESTinio closes the connection (see above). At least
  /// routes.max_body_bytes.
  size_t max_read_body_bytes = 1024 * 1024;
  /// A dispatched request unanswered for this long is answered 504 `timeout`.
  /// Keep it above the replay timeout (the broker's message.timeout.ms).
  std::chrono::milliseconds request_timeout{30000};
  /// Answer GET /health in the server itself (it proves the process serves
  /// HTTP; it does not go through the actors). false: dispatch it.
  bool serve_health = true;
  /// Called once per answered request (any thread; must be thread-safe and
  /// quick): the route, the status sent and the seconds since the request
  /// arrived. For crm_http_requests_total / crm_http_request_seconds.
  std::function<void(route_kind route, int status, double seconds)> observer;
  /// PEM certificate chain and private key: both set, the server speaks
  /// HTTPS only; both empty, plain HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
  /// A TLS client that has not completed its handshake this long after
  /// connecting is disconnected.
  std::chrono::milliseconds tls_handshake_timeout{10000};
};

/// The HTTP server. Starts serving in the constructor, stops in stop() or the
/// destructor.
class http_server {
public:
  using dispatcher =
    std::function<void(std::shared_ptr<pending_request>, parsed_request)>;

  /// Binds and starts `opts.threads` threads. Throws std::runtime_error
  /// naming address and port when it cannot listen (port in use, bad
  /// address), tls_error (a std::runtime_error) naming the file when the
  /// certificate or key cannot be used, std::invalid_argument for bad
  /// options (one of tls_cert_file and tls_key_file without the other).
  http_server(http_server_options opts, dispatcher dispatch);

  /// stop().
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  /// Answers every pending request 503 `shutting_down`, stops accepting,
  /// gives answers in progress a short moment to be written, then stops the
  /// threads and closes all connections. Idempotent. Must not be called from
  /// the dispatcher or an observer (it joins the server's threads).
  void stop();

  /// The port listened on (the kernel's choice when opts.port was 0).
  uint16_t port() const noexcept;

  /// True when serving HTTPS.
  bool tls() const noexcept;

  /// Requests dispatched and not yet answered.
  size_t in_flight() const;

  struct connection_stats {
    size_t open = 0;              // connections open now (or handshaking)
    size_t max = 0;               // the bound in force
    uint64_t refused = 0;         // closed at once: beyond the bound
    uint64_t acceptor_reopens = 0; // accept loop restarted by the watchdog
    uint64_t handshake_timeouts = 0; // TLS handshakes cut off (too slow)
  };
  connection_stats connections() const noexcept;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

/// Descriptors left to the rest of the process (PostgreSQL and Kafka
/// connections, logs, the metrics server) when the connection bound is fitted
/// under the descriptor limit.
inline constexpr size_t fd_reserve = 64;

/// `wanted`, but at most the soft RLIMIT_NOFILE minus fd_reserve (half the
/// limit when it is that small), and at least 1.
size_t effective_max_connections(size_t wanted) noexcept;

struct fd_limits {
  uint64_t before = 0; // soft RLIMIT_NOFILE before
  uint64_t after = 0;  // and after
  uint64_t hard = 0;
};

/// Raises the soft RLIMIT_NOFILE to the hard limit (call once at start,
/// before threads open descriptors). Never fails: on error the limit stays.
fd_limits raise_fd_limit() noexcept;

} // namespace ces::api
