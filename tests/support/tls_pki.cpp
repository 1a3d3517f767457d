#include "tests/support/tls_pki.hpp"

#include "tests/support/process.hpp"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ces::test {

namespace {

void run(const std::vector<std::string>& argv, const std::string& cwd) {
  spawn_options opts;
  opts.cwd = cwd;
  child_process p{argv, opts};
  auto st = p.wait_exit(std::chrono::seconds(30));
  if (!st || !st->success())
    throw std::runtime_error("test_pki: command failed: " + p.describe());
}

} // namespace

test_pki::test_pki() : dir(make_temp_dir("ces-pki")) {
  ca_cert = dir + "/ca.pem";
  server_cert = dir + "/server.pem";
  server_key = dir + "/server.key";
  other_key = dir + "/other.key";
  {
    std::ofstream ext{dir + "/server.ext"};
    ext << "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n"
           "basicConstraints=critical,CA:FALSE\n"
           "keyUsage=critical,digitalSignature\n"
           "extendedKeyUsage=serverAuth\n";
  }
  std::vector<std::string> ec = {"-newkey", "ec", "-pkeyopt",
                                 "ec_paramgen_curve:prime256v1", "-nodes"};
  auto with = [&](std::vector<std::string> a) {
    a.insert(a.begin() + 2, ec.begin(), ec.end());
    return a;
  };
  run(with({"openssl", "req", "-x509", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=crm-events-sink test CA", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext",
            "keyUsage=critical,keyCertSign,cRLSign"}),
      dir);
  run(with({"openssl", "req", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=localhost"}),
      dir);
  run({"openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
       "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days",
       "2", "-extfile", "server.ext"},
      dir);
  run({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt",
       "ec_paramgen_curve:prime256v1", "-out", "other.key"},
      dir);
}

test_pki::~test_pki() {
  if (std::getenv("CES_KEEP_TEST_FILES") == nullptr)
    remove_tree(dir);
}

std::string curl_result::header(const std::string& lowercase_key) const {
  for (auto& [k, v] : headers)
    if (k == lowercase_key)
      return v;
  return {};
}

curl_result curl(const std::vector<std::string>& args,
                 std::chrono::milliseconds timeout) {
  auto dir = make_temp_dir("ces-curl");
  std::vector<std::string> argv = {"curl", "-sS", "-D", dir + "/headers",
                                   "-o", dir + "/body"};
  argv.insert(argv.end(), args.begin(), args.end());
  child_process p{argv};
  auto st = p.wait_exit(timeout);
  if (!st) {
    remove_tree(dir);
    throw std::runtime_error("curl did not end: " + p.describe());
  }
  curl_result r;
  r.exit_code = st->exited ? st->code : -1;
  r.stderr_text = p.stderr_text();
  r.body = read_file(dir + "/body");
  // With redirects or 100-continue there are several header blocks: the
  // last one wins.
  std::istringstream in{read_file(dir + "/headers")};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.rfind("HTTP/", 0) == 0) {
      r.headers.clear();
      auto sp = line.find(' ');
      r.status = sp == std::string::npos ? 0 : std::atoi(line.c_str() + sp + 1);
    } else if (auto colon = line.find(':'); colon != std::string::npos) {
      auto key = line.substr(0, colon);
      std::transform(key.begin(), key.end(), key.begin(), [](unsigned char c) {
        return static_cast<char>(std::tolower(c));
      });
      auto value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      r.headers.emplace_back(key, value);
    }
  }
  remove_tree(dir);
  return r;
}

} // namespace ces::test
