// The Kafka test tools against each other and against kcat, an independent
// client: crm-mock-broker (librdkafka's mock cluster in its own process),
// crm-produce (events, poison records, manifest) and the broker's control
// commands (watermarks, down/up, error injection).
#include "tests/support/process.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

using namespace std::chrono_literals;
using ces::test::child_process;
using ces::test::spawn_options;
using ces::test::stream;

namespace {

const std::string leads = "apexflow.leads.created";
const std::string jobs = "apexflow.jobs.created";

/// A temp directory removed at the end of the test.
struct temp_dir {
  std::string path = ces::test::make_temp_dir("ces-kafka-tools");
  ~temp_dir() {
    if (std::getenv("CES_KEEP_TEST_FILES") == nullptr)
      ces::test::remove_tree(path);
  }
};

struct tool_result {
  ces::test::exit_status status;
  std::string out;
  std::string err;
};

/// Runs a tool to completion (killed after `timeout`).
tool_result run_tool(std::vector<std::string> argv,
                     std::chrono::milliseconds timeout = 60s) {
  child_process p{std::move(argv)};
  auto st = p.wait_exit(timeout);
  if (!st) {
    UNSCOPED_INFO("timed out:\n" << p.describe());
    st = p.kill9();
  }
  return {*st, p.stdout_text(), p.stderr_text()};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in{text};
  std::string line;
  while (std::getline(in, line))
    if (!line.empty())
      out.push_back(line);
  return out;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in{s};
  while (std::getline(in, cur, sep))
    out.push_back(cur);
  return out;
}

/// crm-mock-broker as a child process, controlled through its stdin.
class mock_broker {
public:
  explicit mock_broker(const std::vector<std::string>& extra_args,
                       bool control_stdin = true) {
    std::vector<std::string> argv{CES_MOCK_BROKER_BIN};
    if (control_stdin)
      argv.push_back("--control-stdin");
    argv.insert(argv.end(), extra_args.begin(), extra_args.end());
    spawn_options opts;
    opts.pipe_stdin = control_stdin;
    proc_ = std::make_unique<child_process>(argv, opts);
    auto line = proc_->wait_for_line(stream::out, "bootstrap=", 15s);
    INFO(proc_->describe());
    REQUIRE(line);
    REQUIRE(line->rfind("bootstrap=", 0) == 0);
    bootstrap_ = line->substr(std::string("bootstrap=").size());
    REQUIRE_FALSE(bootstrap_.empty());
  }

  const std::string& bootstrap() const {
    return bootstrap_;
  }
  child_process& proc() {
    return *proc_;
  }

  /// Sends one command; returns its `ok ...`/`error ...` answer and, in
  /// `before`, the lines printed between the command and the answer.
  std::string command(const std::string& cmd,
                      std::vector<std::string>* before = nullptr,
                      std::chrono::milliseconds timeout = 20s) {
    const size_t from = proc_->output_size(stream::out);
    REQUIRE(proc_->write_stdin(cmd + "\n"));
    static const std::regex answer{"^(ok|error)( |$)"};
    auto line = proc_->wait_for_regex(stream::out, answer, timeout, from);
    INFO("command: " << cmd << "\n" << proc_->describe());
    REQUIRE(line);
    if (before != nullptr) {
      before->clear();
      for (auto& l : lines_of(proc_->stdout_text().substr(from)))
        if (l != *line)
          before->push_back(l);
        else
          break;
    }
    return *line;
  }

  /// (topic, partition) -> (low, high), from the `watermarks` command.
  std::map<std::pair<std::string, int>, std::pair<long long, long long>>
  watermarks() {
    std::vector<std::string> lines;
    auto answer = command("watermarks", &lines);
    INFO(answer);
    REQUIRE(answer.rfind("ok watermarks", 0) == 0);
    std::map<std::pair<std::string, int>, std::pair<long long, long long>> out;
    for (const auto& l : lines) {
      std::istringstream in{l};
      std::string tag, topic;
      int partition = -1;
      long long low = -1, high = -1;
      in >> tag >> topic >> partition >> low >> high;
      if (tag == "watermark")
        out[{topic, partition}] = {low, high};
    }
    return out;
  }

private:
  std::unique_ptr<child_process> proc_;
  std::string bootstrap_;
};

struct manifest_entry {
  std::string topic;
  int partition = -1;
  long long offset = -1;
  std::string kind;
  std::string variant;
};

std::vector<manifest_entry> read_manifest(const std::string& path) {
  std::vector<manifest_entry> out;
  for (const auto& l : lines_of(ces::test::read_file(path))) {
    auto f = split(l, '\t');
    REQUIRE(f.size() >= 4);
    manifest_entry e;
    e.topic = f[0];
    e.partition = std::stoi(f[1]);
    e.offset = std::stoll(f[2]);
    e.kind = f[3];
    if (f.size() > 4)
      e.variant = f[4];
    out.push_back(std::move(e));
  }
  return out;
}

using record_id = std::tuple<std::string, int, long long>;

/// What kcat reads from a topic: (topic, partition, offset) -> "size headers".
std::map<record_id, std::string> kcat_read(const std::string& bootstrap,
                                           const std::string& topic,
                                           size_t* duplicates) {
  auto r = run_tool({"kcat", "-C", "-b", bootstrap, "-t", topic, "-o",
                     "beginning", "-e", "-q", "-f", "%t %p %o %S %h\n"});
  INFO("kcat stderr: " << r.err);
  REQUIRE(r.status.success());
  std::map<record_id, std::string> out;
  *duplicates = 0;
  for (const auto& l : lines_of(r.out)) {
    std::istringstream in{l};
    std::string t;
    int p = -1;
    long long o = -1;
    in >> t >> p >> o;
    std::string rest;
    std::getline(in, rest);
    if (!out.emplace(record_id{t, p, o}, rest).second)
      ++*duplicates;
  }
  return out;
}

} // namespace

TEST_CASE("crm-produce output read back by kcat, checked against the manifest "
          "and the broker's watermarks",
          "[kafka_tools]") {
  temp_dir dir;
  const std::string bs_file = dir.path + "/bootstrap.txt";
  mock_broker broker{{"--topics", leads + "," + jobs, "--partitions", "4",
                      "--bootstrap-file", bs_file}};
  CHECK(ces::test::read_file(bs_file) == "bootstrap=" + broker.bootstrap()
                                           + "\n");
  CHECK(broker.command("ping") == "ok pong");

  const std::string manifest = dir.path + "/manifest.tsv";
  const int n = 2000;
  auto r = run_tool({CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                     "--count", std::to_string(n), "--poison-every", "7",
                     "--header-tenant-every", "11", "--seed", "42",
                     "--manifest", manifest, "--manifest-variants",
                     "--quiet"});
  INFO("crm-produce: " << r.status.describe() << "\n" << r.out << r.err);
  REQUIRE(r.status.success());
  CHECK(r.out.find("delivered=2000 failed=0") != std::string::npos);

  auto entries = read_manifest(manifest);
  REQUIRE(entries.size() == static_cast<size_t>(n));

  std::map<std::string, int> kinds;
  std::map<std::string, int> variants;
  std::map<std::pair<std::string, int>, long long> per_partition;
  std::map<record_id, const manifest_entry*> by_id;
  for (const auto& e : entries) {
    ++kinds[e.kind];
    ++variants[e.variant];
    ++per_partition[{e.topic, e.partition}];
    CHECK(by_id.emplace(record_id{e.topic, e.partition, e.offset}, &e).second);
  }

  SECTION("poison kinds use the DLQ error classes") {
    // 2000 / 7 = 285 poison records cycling through 8 variants.
    CHECK(kinds["invalid_json"] > 0);
    CHECK(kinds["missing_tenant"] > 0);
    CHECK(kinds["empty_value"] > 0);
    CHECK(kinds.count("too_large") == 0); // only with --oversize
    CHECK(kinds["ok"] + kinds["invalid_json"] + kinds["missing_tenant"]
            + kinds["empty_value"]
          == n);
    CHECK(kinds["ok"] == n - n / 7);
    for (const char* v : {"non_utf8", "nul_escape", "lone_surrogate",
                          "tenant_number", "null_value", "header_tenant"})
      CHECK(variants[v] > 0);
  }

  SECTION("kcat reads every manifest record exactly once, spread over all "
          "partitions") {
    size_t total = 0;
    for (const auto& topic : {leads, jobs}) {
      size_t dups = 0;
      auto got = kcat_read(broker.bootstrap(), topic, &dups);
      CHECK(dups == 0);
      total += got.size();
      for (const auto& [id, rest] : got) {
        auto it = by_id.find(id);
        INFO(std::get<0>(id) << " [" << std::get<1>(id) << "] @"
                             << std::get<2>(id));
        REQUIRE(it != by_id.end());
        const manifest_entry& e = *it->second;
        std::istringstream in{rest};
        long long size = -2;
        std::string headers;
        in >> size;
        std::getline(in, headers);
        if (e.variant == "header_tenant") {
          CHECK(headers.find("tenant_id=tenant-") != std::string::npos);
        } else {
          CHECK(headers.find("tenant_id") == std::string::npos);
        }
        if (e.variant == "empty_value")
          CHECK(size == 0);
        else if (e.variant == "null_value")
          CHECK(size == -1);
        else
          CHECK(size >= 150);
        if (e.kind == "ok")
          CHECK((size >= 350 && size <= 700));
      }
      for (int p = 0; p < 4; ++p) {
        // Keyed events spread evenly: each partition gets ~250 of 1000.
        INFO(topic << " [" << p << "]");
        CHECK(per_partition[{topic, p}] >= 150);
      }
    }
    CHECK(total == entries.size());
  }

  SECTION("the watermarks command agrees with the manifest") {
    auto wm = broker.watermarks();
    REQUIRE(wm.size() == 8);
    for (const auto& [tp, range] : wm) {
      INFO(tp.first << " [" << tp.second << "]");
      CHECK(range.first == 0);
      CHECK(range.second == per_partition[tp]);
    }
  }

  SECTION("EOF on stdin keeps the broker running; SIGTERM stops it") {
    broker.proc().close_stdin();
    CHECK(broker.proc().wait_for_line(stream::err, "EOF on stdin", 5s));
    CHECK(broker.proc().running());
    CHECK(ces::test::wait_for_tcp(
      "127.0.0.1",
      static_cast<uint16_t>(std::stoi(
        broker.bootstrap().substr(broker.bootstrap().rfind(':') + 1))),
      2s));
    REQUIRE(broker.proc().signal(SIGTERM));
    auto st = broker.proc().wait_exit(10s);
    REQUIRE(st);
    CHECK(st->success());
  }
}

TEST_CASE("crm-produce --oversize makes a too_large record above 1 MiB",
          "[kafka_tools]") {
  temp_dir dir;
  mock_broker broker{{"--topics", "big", "--partitions", "2"}};
  const std::string manifest = dir.path + "/manifest.tsv";
  // Every 9th record is poison; with --oversize the 9th poison kind is
  // too_large: record 81 of 90.
  auto r = run_tool({CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                     "--topics", "big", "--count", "90", "--poison-every", "9",
                     "--oversize", "--manifest", manifest, "--quiet"});
  INFO(r.out << r.err);
  REQUIRE(r.status.success());
  auto entries = read_manifest(manifest);
  REQUIRE(entries.size() == 90);
  int too_large = 0;
  for (const auto& e : entries)
    too_large += e.kind == "too_large";
  CHECK(too_large == 1);

  auto k = run_tool({"kcat", "-C", "-b", broker.bootstrap(), "-t", "big", "-o",
                     "beginning", "-e", "-q", "-f", "%S\n"});
  REQUIRE(k.status.success());
  long long largest = 0;
  size_t count = 0;
  for (const auto& l : lines_of(k.out)) {
    largest = std::max(largest, std::stoll(l));
    ++count;
  }
  CHECK(count == 90);
  CHECK(largest > 1024 * 1024);
}

TEST_CASE("crm-produce payloads are deterministic for a seed",
          "[kafka_tools]") {
  mock_broker broker{{"--topics", "det.a,det.b", "--partitions", "3"}};
  for (const char* topic : {"det.a", "det.b"}) {
    auto r = run_tool({CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                       "--topics", topic, "--count", "60", "--seed", "7",
                       "--quiet"});
    REQUIRE(r.status.success());
  }
  auto read = [&](const char* topic) {
    auto k = run_tool({"kcat", "-C", "-b", broker.bootstrap(), "-t", topic,
                       "-o", "beginning", "-e", "-q", "-f", "%p %o %k %s\n"});
    REQUIRE(k.status.success());
    auto lines = lines_of(k.out);
    std::sort(lines.begin(), lines.end());
    return lines;
  };
  auto a = read("det.a");
  auto b = read("det.b");
  REQUIRE(a.size() == 60);
  CHECK(a == b);
  CHECK(a.front().find("\"event_type\":\"lead.created\"") != std::string::npos);
}

TEST_CASE("crm-mock-broker down/up: produce fails or stalls while down and "
          "succeeds after up",
          "[kafka_tools]") {
  temp_dir dir;
  const std::string fifo = dir.path + "/control";
  // Control through a FIFO here (the other tests use stdin).
  mock_broker broker{{"--topics", "updown", "--partitions", "2", "--control",
                      fifo},
                     false};
  int ctl = ::open(fifo.c_str(), O_WRONLY | O_CLOEXEC);
  REQUIRE(ctl >= 0);
  auto command = [&](const std::string& cmd) {
    const size_t from = broker.proc().output_size(stream::out);
    std::string line = cmd + "\n";
    REQUIRE(::write(ctl, line.data(), line.size())
            == static_cast<ssize_t>(line.size()));
    static const std::regex answer{"^(ok|error)( |$)"};
    auto got = broker.proc().wait_for_regex(stream::out, answer, 20s, from);
    INFO(broker.proc().describe());
    REQUIRE(got);
    return *got;
  };
  const auto port = static_cast<uint16_t>(std::stoi(
    broker.bootstrap().substr(broker.bootstrap().rfind(':') + 1)));

  CHECK(command("down 1") == "ok down 1");
  // The listener is closed while down: connects are refused.
  CHECK_FALSE(ces::test::wait_for_tcp("127.0.0.1", port, 300ms));
  CHECK(command("down 9").rfind("error ", 0) == 0);

  // A producer with a short message timeout fails.
  auto failed = run_tool({CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                          "--topics", "updown", "--count", "5",
                          "--message-timeout-ms", "1500", "--quiet"});
  INFO(failed.out << failed.err);
  CHECK(failed.status.exited);
  CHECK(failed.status.code == 1);
  CHECK(failed.out.find("delivered=0 failed=5") != std::string::npos);
  CHECK(failed.out.find("_MSG_TIMED_OUT") != std::string::npos);

  // A producer with the default timeout stalls until the broker is up.
  child_process stalled{{CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                         "--topics", "updown", "--count", "5", "-X",
                         "reconnect.backoff.max.ms=500", "--quiet"}};
  CHECK_FALSE(stalled.wait_exit(1500ms));
  CHECK(command("up 1") == "ok up 1");
  CHECK(ces::test::wait_for_tcp("127.0.0.1", port, 2s));
  auto st = stalled.wait_exit(30s);
  INFO(stalled.describe());
  REQUIRE(st);
  CHECK(st->success());
  CHECK(stalled.stdout_text().find("delivered=5 failed=0")
        != std::string::npos);

  // Injected errors are retried by the producer.
  CHECK(command("error Produce NOT_LEADER_FOR_PARTITION 3")
        == "ok error Produce NOT_LEADER_FOR_PARTITION 3");
  CHECK(command("error NoSuchApi 1 1").rfind("error ", 0) == 0);
  CHECK(command("frobnicate").rfind("error ", 0) == 0);
  auto retried = run_tool({CES_PRODUCE_BIN, "--bootstrap", broker.bootstrap(),
                           "--topics", "updown", "--count", "10", "--quiet"});
  INFO(retried.out << retried.err);
  CHECK(retried.status.success());

  // 5 + 10 delivered records, none lost; the failed ones never arrived.
  std::string wm_answer;
  long long total = 0;
  {
    const size_t from = broker.proc().output_size(stream::out);
    wm_answer = command("watermarks updown");
    for (const auto& l :
         lines_of(broker.proc().stdout_text().substr(from))) {
      std::istringstream in{l};
      std::string tag, topic;
      int p;
      long long lo, hi;
      if (in >> tag >> topic >> p >> lo >> hi && tag == "watermark")
        total += hi - lo;
    }
  }
  CHECK(wm_answer == "ok watermarks partitions=2 messages=15 errors=0");
  CHECK(total == 15);

  CHECK(command("shutdown") == "ok shutdown");
  auto bst = broker.proc().wait_exit(10s);
  REQUIRE(bst);
  CHECK(bst->success());
  ::close(ctl);
}

// ---- tests/support/process.hpp itself -----------------------------------------

TEST_CASE("child_process: env, exit codes, signals, stdin, output files",
          "[process]") {
  SECTION("exit code and extra environment") {
    spawn_options o;
    o.env = {{"CES_X", "42"}};
    child_process p{{"sh", "-c", "echo \"v=$CES_X\"; echo oops >&2; exit 3"},
                    o};
    auto st = p.wait_exit(10s);
    REQUIRE(st);
    CHECK(st->exited);
    CHECK(st->code == 3);
    CHECK_FALSE(st->success());
    CHECK(p.stdout_text() == "v=42\n");
    CHECK(p.stderr_text() == "oops\n");
    CHECK(st->describe() == "exit 3");
  }
  SECTION("signals, kill9, wait_for_line") {
    child_process p{{"sh", "-c", "echo ready; exec sleep 30"}};
    CHECK(p.wait_for_line(stream::out, "ready", 10s) == std::string("ready"));
    CHECK(p.running());
    CHECK_FALSE(p.wait_exit(50ms));
    auto st = p.kill9();
    CHECK(st.signaled);
    CHECK(st.signal == SIGKILL);
    CHECK_FALSE(p.running());
    CHECK_FALSE(p.signal(SIGTERM));
  }
  SECTION("stdin pipe, regex wait, from offset") {
    spawn_options o;
    o.pipe_stdin = true;
    child_process p{{"sh", "-c", "while read l; do echo \"got $l\"; done; "
                                 "echo bye"},
                    o};
    REQUIRE(p.write_stdin("one\n"));
    CHECK(p.wait_for_line(stream::out, "got one", 10s));
    const size_t from = p.output_size(stream::out);
    REQUIRE(p.write_stdin("two\n"));
    CHECK(p.wait_for_regex(stream::out, std::regex{"^got (one|two)$"}, 10s,
                           from)
          == std::string("got two"));
    p.close_stdin();
    auto st = p.wait_exit(10s);
    REQUIRE(st);
    CHECK(st->success());
    CHECK(p.stdout_text() == "got one\ngot two\nbye\n");
    // A line that never comes: nullopt once the child has ended.
    CHECK_FALSE(p.wait_for_line(stream::out, "never", 10s));
  }
  SECTION("a missing program throws") {
    CHECK_THROWS_AS(child_process({"/nonexistent/ces-no-such-tool"}),
                    std::runtime_error);
  }
  SECTION("the destructor kills a running child") {
    pid_t pid;
    {
      child_process p{{"sleep", "30"}};
      pid = p.pid();
      CHECK(::kill(pid, 0) == 0);
    }
    CHECK(::kill(pid, 0) != 0); // reaped: no such process
  }
}

namespace {

/// A one-shot HTTP server on 127.0.0.1 for the client tests: answers every
/// connection with `response` after reading the request headers (and body).
class tiny_http_server {
public:
  explicit tiny_http_server(std::string response)
    : response_(std::move(response)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~tiny_http_server() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  uint16_t port() const {
    return port_;
  }
  std::string last_request() {
    std::lock_guard<std::mutex> g{mtx_};
    return request_;
  }

private:
  void serve() {
    for (;;) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0)
        return;
      std::string req;
      char buf[4096];
      for (;;) {
        auto he = req.find("\r\n\r\n");
        if (he != std::string::npos) {
          auto cl = req.find("Content-Length: ");
          size_t body = cl == std::string::npos
                          ? 0
                          : std::stoul(req.substr(cl + 16));
          if (req.size() >= he + 4 + body)
            break;
        }
        ssize_t n = ::recv(c, buf, sizeof(buf), 0);
        if (n <= 0)
          break;
        req.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard<std::mutex> g{mtx_};
        request_ = req;
      }
      ::send(c, response_.data(), response_.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  std::string response_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mtx_;
  std::string request_;
};

} // namespace

TEST_CASE("http_request: GET and POST, Content-Length and chunked bodies",
          "[process]") {
  SECTION("GET with Content-Length") {
    tiny_http_server srv{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                         "Content-Length: 5\r\n\r\nhello"};
    auto r = ces::test::http_get("127.0.0.1", srv.port(), "/health");
    INFO(r.error);
    CHECK(r.status == 200);
    CHECK(r.reason == "OK");
    CHECK(r.body == "hello");
    CHECK(r.header("content-type") == "text/plain");
    CHECK(srv.last_request().rfind("GET /health HTTP/1.1\r\n", 0) == 0);
    CHECK(srv.last_request().find("Connection: close") != std::string::npos);
  }
  SECTION("POST with a body, chunked response") {
    tiny_http_server srv{"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked"
                         "\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"};
    auto r = ces::test::http_post("127.0.0.1", srv.port(), "/replay/7",
                                  "{\"x\":1}");
    INFO(r.error);
    CHECK(r.status == 202);
    CHECK(r.body == "{\"a\":1}");
    auto req = srv.last_request();
    CHECK(req.rfind("POST /replay/7 HTTP/1.1\r\n", 0) == 0);
    CHECK(req.find("Content-Length: 7\r\n") != std::string::npos);
    CHECK(req.find("Content-Type: application/json\r\n") != std::string::npos);
    CHECK(req.substr(req.size() - 7) == "{\"x\":1}");
  }
  SECTION("nothing listening") {
    auto port = ces::test::free_tcp_port();
    CHECK(port > 0);
    auto r = ces::test::http_get("127.0.0.1", port, "/", 1s);
    CHECK(r.status == 0);
    CHECK_FALSE(r.error.empty());
    CHECK_FALSE(ces::test::wait_for_tcp("127.0.0.1", port, 100ms));
  }
}

// ---- ces::embedded_broker in-process ------------------------------------------

#include "actors/kafka/embedded_broker.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

TEST_CASE("embedded_broker hosts a cluster in-process", "[kafka_tools]") {
  CHECK_THROWS_AS(ces::embedded_broker({"t"}, 0), std::runtime_error);
  CHECK_THROWS_AS(ces::embedded_broker({"t"}, 1, 0), std::runtime_error);

  ces::embedded_broker broker{{"one", "two"}, 3, 3};
  CHECK(std::regex_match(broker.bootstraps(),
                         std::regex{R"(127\.0\.0\.1:\d+(,127\.0\.0\.1:\d+){2})"}));
  REQUIRE(broker.cluster() != nullptr);
  CHECK_THROWS_AS(broker.create_topic("one", 2), std::runtime_error);
  broker.create_topic("three", 2);

  auto wm = broker.watermarks();
  REQUIRE(wm.size() == 3 + 3 + 2);
  CHECK(wm.front().topic == "one");
  for (const auto& w : wm) {
    CHECK(w.error.empty());
    CHECK(w.low == 0);
    CHECK(w.high == 0);
  }

  // The hosting handle is never polled: an outside client still works.
  auto produce = [&](const std::string& topic, int partition) {
    child_process p{{"sh", "-c",
                     "printf 'a\\nb\\nc\\n' | kcat -P -b " + broker.bootstraps()
                       + " -t " + topic + " -p " + std::to_string(partition)}};
    auto st = p.wait_exit(30s);
    INFO(p.describe());
    REQUIRE(st);
    CHECK(st->success());
  };
  produce("two", 1);
  long long two_1 = -1;
  for (const auto& w : broker.watermarks())
    if (w.topic == "two" && w.partition == 1)
      two_1 = w.high;
  CHECK(two_1 == 3);

  // Fault injection through cluster(): a topic error shows in watermarks().
  rd_kafka_mock_topic_set_error(broker.cluster(), "three",
                                RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED);
  bool saw_error = false;
  for (const auto& w : broker.watermarks())
    if (w.topic == "three") {
      CHECK(w.partition == -1);
      CHECK_FALSE(w.error.empty());
      saw_error = true;
    }
  CHECK(saw_error);
  rd_kafka_mock_topic_set_error(broker.cluster(), "three",
                                RD_KAFKA_RESP_ERR_NO_ERROR);

  // All brokers down: Metadata cannot be answered.
  REQUIRE(rd_kafka_mock_broker_set_down(broker.cluster(), -1)
          == RD_KAFKA_RESP_ERR_NO_ERROR);
  CHECK_THROWS_AS(broker.watermarks(1500ms), std::runtime_error);
  REQUIRE(rd_kafka_mock_broker_set_up(broker.cluster(), -1)
          == RD_KAFKA_RESP_ERR_NO_ERROR);
  CHECK(broker.watermarks(10s).size() == 8);
}
