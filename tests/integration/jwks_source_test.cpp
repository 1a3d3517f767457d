// ces::auth::jwks_source (api/jwks_source.cpp) against a real HTTPS server:
// `openssl s_server -HTTP` with a self-signed certificate made by the openssl
// CLI, answering with whole HTTP responses kept in files of a temp directory
// (so that a test can also answer 404 or a redirect).
#include "api/jwt.hpp"
#include "tests/support/jwt_keys.hpp"
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>

#include <fstream>

using namespace std::chrono_literals;
using ces::auth::jwks;
using ces::auth::jwks_source;

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  REQUIRE(out.good());
}

/// Runs a command to completion in `cwd`; requires exit code 0.
void run(std::vector<std::string> argv, const std::string& cwd) {
  ces::test::spawn_options opts;
  opts.cwd = cwd;
  ces::test::child_process p{std::move(argv), opts};
  auto st = p.wait_exit(60s);
  INFO(p.describe());
  REQUIRE(st);
  REQUIRE(st->success());
}

/// A self-signed certificate for DNS:localhost and `openssl s_server -HTTP`
/// serving the responses in files of a temp directory on 127.0.0.1.
struct https_server {
  std::string dir = ces::test::make_temp_dir("ces-jwks");
  uint16_t port = 0;
  std::optional<ces::test::child_process> server;

  https_server() {
    run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "key.pem",
         "-out", "cert.pem", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost"},
        dir);
    port = ces::test::free_tcp_port();
    ces::test::spawn_options opts;
    opts.cwd = dir;
    opts.pipe_stdin = true; // s_server must not see EOF on stdin
    server.emplace(std::vector<std::string>{"openssl", "s_server", "-HTTP",
                                            "-accept",
                                            "127.0.0.1:"
                                              + std::to_string(port),
                                            "-cert", "cert.pem", "-key",
                                            "key.pem", "-quiet"},
                   opts);
    INFO(server->describe());
    REQUIRE(ces::test::wait_for_tcp("127.0.0.1", port, 10s));
  }

  ~https_server() {
    if (server)
      server->kill9();
    ces::test::remove_tree(dir);
  }

  /// GET /name answers `status` with `headers` and `body`.
  void serve(const std::string& name, const std::string& body,
             const std::string& status = "200 OK",
             const std::string& headers = "") const {
    write_file(dir + "/" + name,
               "HTTP/1.0 " + status + "\r\nContent-Type: application/json\r\n"
                 + headers + "Content-Length: "
                 + std::to_string(body.size()) + "\r\n\r\n" + body);
  }

  std::string url(const std::string& host, const std::string& file) const {
    return "https://" + host + ":" + std::to_string(port) + "/" + file;
  }

  std::string cert() const {
    return dir + "/cert.pem";
  }
};

} // namespace

TEST_CASE("jwks_source fetches over https with the given CA only",
          "[jwks_source]") {
  https_server srv;
  auto rsa = ces::test::rsa_key("rsa-1");
  auto ec = ces::test::ec_key("ec-1");
  srv.serve("jwks.json", ces::test::jwks_json({&rsa, &ec}));
  srv.serve("big.json", std::string(jwks::max_document_bytes + 10, ' '));
  srv.serve("empty.json", R"({"keys": []})");
  srv.serve("missing.json", "{}", "404 Not Found");
  srv.serve("to-http.json", "", "302 Found",
            "Location: http://localhost:" + std::to_string(srv.port)
              + "/jwks.json\r\n");
  srv.serve("to-https.json", "", "302 Found",
            "Location: " + srv.url("localhost", "jwks.json") + "\r\n");
  std::string err;

  SECTION("trusted certificate: the document's keys") {
    jwks_source src{srv.url("localhost", "jwks.json"), srv.cert(), 60s};
    CHECK(src.is_url());
    auto set = src.fetch(&err);
    INFO(err);
    REQUIRE(set);
    CHECK(set->keys().size() == 2);
    CHECK(set->find("rsa-1", jwks::key_type::rsa)->pem == rsa.public_pem);
    CHECK(set->find("ec-1", jwks::key_type::ec_p256)->pem == ec.public_pem);
  }
  SECTION("system CAs only: the self-signed certificate is refused") {
    jwks_source src{srv.url("localhost", "jwks.json"), "", 60s};
    CHECK_FALSE(src.fetch(&err));
    INFO(err);
    CHECK(err.find("certificate") != std::string::npos);
  }
  SECTION("a host the certificate does not name is refused") {
    // The certificate names DNS:localhost, not IP 127.0.0.1.
    jwks_source src{srv.url("127.0.0.1", "jwks.json"), srv.cert(), 60s};
    CHECK_FALSE(src.fetch(&err));
    INFO(err);
    CHECK(err.find("host name") != std::string::npos);
    CHECK(err.find("jwks.json") == std::string::npos); // no URL path
  }
  SECTION("a body over 1 MiB is refused") {
    jwks_source src{srv.url("localhost", "big.json"), srv.cert(), 60s};
    CHECK_FALSE(src.fetch(&err));
    CHECK(err.find("larger than") != std::string::npos);
  }
  SECTION("a document without usable keys is an error") {
    jwks_source src{srv.url("localhost", "empty.json"), srv.cert(), 60s};
    CHECK_FALSE(src.fetch(&err));
    CHECK(err.find("no usable key") != std::string::npos);
  }
  SECTION("a status other than 200 is an error") {
    jwks_source src{srv.url("localhost", "missing.json"), srv.cert(), 60s};
    CHECK_FALSE(src.fetch(&err));
    CHECK(err == "JWKS fetch: HTTP status 404");
  }
  SECTION("a redirect to http is refused") {
    jwks_source src{srv.url("localhost", "to-http.json"), srv.cert(), 60s};
    CHECK_FALSE(src.fetch(&err));
    INFO(err);
    CHECK(err.find("JWKS fetch failed") != std::string::npos);
    CHECK(err.find("Protocol \"http\" not supported") != std::string::npos);
  }
  SECTION("a redirect to https is followed") {
    jwks_source src{srv.url("localhost", "to-https.json"), srv.cert(), 60s};
    auto set = src.fetch(&err);
    INFO(err);
    REQUIRE(set);
    CHECK(set->keys().size() == 2);
  }
}

TEST_CASE("jwks_source refuses http and other schemes", "[jwks_source]") {
  // Nothing needs to listen: the URL is refused before any connection.
  auto port = std::to_string(ces::test::free_tcp_port());
  for (std::string url : {"http://127.0.0.1:" + port + "/jwks.json",
                          "HTTP://127.0.0.1:" + port + "/jwks.json",
                          std::string("file:///etc/passwd"),
                          "ftp://127.0.0.1:" + port + "/jwks.json"}) {
    jwks_source src{url, "", 1s};
    std::string err;
    CHECK(src.is_url());
    CHECK_FALSE(src.fetch(&err));
    CHECK(err == "JWKS location must be a file path or an https:// URL");
  }
}

TEST_CASE("jwks_source reads a file", "[jwks_source]") {
  auto dir = ces::test::make_temp_dir("ces-jwks");
  auto ec = ces::test::ec_key("ec-file");
  write_file(dir + "/jwks.json", ces::test::jwks_json({&ec}));
  std::string err;
  jwks_source src{dir + "/jwks.json", "", 60s};
  CHECK_FALSE(src.is_url());
  auto set = src.fetch(&err);
  INFO(err);
  REQUIRE(set);
  CHECK(set->keys().size() == 1);
  CHECK(set->keys()[0].kid == "ec-file");

  jwks_source missing{dir + "/nope.json", "", 60s};
  CHECK_FALSE(missing.fetch(&err));
  CHECK(err.find("cannot open") != std::string::npos);

  write_file(dir + "/big.json",
             std::string(jwks::max_document_bytes + 1, ' '));
  jwks_source big{dir + "/big.json", "", 60s};
  CHECK_FALSE(big.fetch(&err));
  CHECK(err.find("larger than") != std::string::npos);
  ces::test::remove_tree(dir);
}

TEST_CASE("may_refresh allows one fetch attempt per min_refresh",
          "[jwks_source]") {
  jwks_source src{"/nonexistent/jwks.json", "", 60s};
  auto t0 = jwks_source::clock::now();
  CHECK(src.may_refresh(t0));
  CHECK_FALSE(src.last_attempt());
  // A failed attempt counts as an attempt.
  CHECK_FALSE(src.fetch());
  REQUIRE(src.last_attempt());
  auto at = *src.last_attempt();
  CHECK(at >= t0);
  CHECK_FALSE(src.may_refresh(at));
  CHECK_FALSE(src.may_refresh(at + 59s));
  CHECK(src.may_refresh(at + 60s));
  CHECK(src.may_refresh(at + 1h));
  // The next attempt starts the interval again.
  CHECK_FALSE(src.fetch());
  CHECK(*src.last_attempt() >= at);
  CHECK_FALSE(src.may_refresh(*src.last_attempt() + 59s));
}
