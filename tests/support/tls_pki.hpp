// Throwaway TLS material and an HTTPS client for tests: a CA and a server
// certificate for 127.0.0.1 and localhost made with the `openssl` CLI, and
// `curl` run as a child process (no Catch2 dependency).
//
//   ces::test::test_pki pki;
//   opts.tls_cert_file = pki.server_cert;
//   opts.tls_key_file = pki.server_key;
//   auto r = ces::test::curl({"--cacert", pki.ca_cert,
//                             "https://127.0.0.1:" + port + "/health"});
//   // r.exit_code == 0, r.status == 200
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace ces::test {

/// A CA and a server certificate signed by it (EC P-256, valid 2 days,
/// subjectAltName IP:127.0.0.1, IP:::1, DNS:localhost), in a fresh temp
/// directory removed by the destructor (unless CES_KEEP_TEST_FILES is set).
/// Throws std::runtime_error if openssl fails.
class test_pki {
public:
  test_pki();
  ~test_pki();
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;

  std::string dir;
  std::string ca_cert;     // PEM: the CA clients trust
  std::string server_cert; // PEM: the server's certificate
  std::string server_key;  // PEM: its private key (no passphrase)
  std::string other_key;   // PEM: a key that does not match server_cert
};

struct curl_result {
  int exit_code = -1; // curl's exit code (0: success; 60: bad certificate)
  int status = 0;     // HTTP status of the last response, 0 if none
  std::vector<std::pair<std::string, std::string>> headers; // keys lowercase
  std::string body;
  std::string stderr_text;

  /// Value of a header (key in lowercase), or "".
  std::string header(const std::string& lowercase_key) const;
};

/// Runs `curl -sS <args>` (add the URL and options to args), keeping the
/// response's headers and body. Throws std::runtime_error if curl does not
/// end within `timeout`.
curl_result curl(const std::vector<std::string>& args,
                 std::chrono::milliseconds timeout
                 = std::chrono::milliseconds{20000});

} // namespace ces::test
