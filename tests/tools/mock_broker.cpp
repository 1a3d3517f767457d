// crm-mock-broker: librdkafka's mock Kafka cluster in a process of its own, so
// tests can kill the sink (-9) while the broker and its data survive.
//
//   crm-mock-broker [--topics a,b] [--partitions 8] [--brokers 1]
//                   [--bootstrap-file PATH] [--control-stdin] [--control PATH]
//                   [--debug CONTEXTS]
//
// Prints `bootstrap=<host:port,...>` on stdout as soon as the cluster serves,
// writes the same line to PATH (via a temporary name and rename), and runs
// until SIGTERM/SIGINT (or a `shutdown` command). Control commands, one per
// line, from stdin (--control-stdin; EOF on stdin just stops reading it) and/or
// from PATH (--control: a FIFO, created if missing, or a regular file that is
// followed like `tail -f`). Every command is answered with one line on stdout
// starting with `ok ` or `error ` (`watermarks` prints its `watermark` lines
// first). Send `help` for the list.
#include "actors/kafka/embedded_broker.hpp"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

const char* const usage_text = R"(usage: crm-mock-broker [options]
  --topics a,b          topics to create (default apexflow.leads.created,apexflow.jobs.created)
  --partitions N        partitions per topic (default 8)
  --brokers N           number of brokers, ids 1..N (default 1)
  --bootstrap-file PATH write "bootstrap=<list>" to PATH once ready (atomic rename)
  --control-stdin       read control commands from stdin (EOF: keep running)
  --control PATH        read control commands from PATH (FIFO, created if missing,
                        or a regular file followed like tail -f)
  --debug CONTEXTS      librdkafka debug contexts for the cluster, e.g. mock
  --help
)";

const char* const help_text[] = {
  "help | ping | bootstrap",
  "down <broker_id|all>             disconnect clients, stop serving the broker",
  "up <broker_id|all>               serve the broker again (same port)",
  "rtt <broker_id|all> <ms>         delay every response of the broker",
  "error <api> <err> [count]        next count requests of api fail with err",
  "                                 (api: name like Produce or number; err: name "
  "like NOT_LEADER_FOR_PARTITION, _TRANSPORT, or number)",
  "clear-errors <api>               drop pending injected errors of api",
  "topic-error <topic> <err>        Metadata reports err for the topic (0 clears)",
  "create-topic <topic> <partitions>",
  "watermarks [topic]               `watermark <topic> <partition> <low> <high>` "
  "lines (`watermark-error <topic> <partition|-1> <message>` for errors), then `ok watermarks partitions=N messages=M errors=E`",
  "shutdown                         exit like on SIGTERM",
};

// Kafka protocol ApiKey names (index = ApiKey).
const char* const api_names[] = {
  "Produce",
  "Fetch",
  "ListOffsets",
  "Metadata",
  "LeaderAndIsr",
  "StopReplica",
  "UpdateMetadata",
  "ControlledShutdown",
  "OffsetCommit",
  "OffsetFetch",
  "FindCoordinator",
  "JoinGroup",
  "Heartbeat",
  "LeaveGroup",
  "SyncGroup",
  "DescribeGroups",
  "ListGroups",
  "SaslHandshake",
  "ApiVersions",
  "CreateTopics",
  "DeleteTopics",
  "DeleteRecords",
  "InitProducerId",
  "OffsetForLeaderEpoch",
  "AddPartitionsToTxn",
  "AddOffsetsToTxn",
  "EndTxn",
  "WriteTxnMarkers",
  "TxnOffsetCommit",
  "DescribeAcls",
  "CreateAcls",
  "DeleteAcls",
  "DescribeConfigs",
  "AlterConfigs",
  "AlterReplicaLogDirs",
  "DescribeLogDirs",
  "SaslAuthenticate",
  "CreatePartitions",
  "CreateDelegationToken",
  "RenewDelegationToken",
  "ExpireDelegationToken",
  "DescribeDelegationToken",
  "DeleteGroups",
  "ElectLeaders",
  "IncrementalAlterConfigs",
  "AlterPartitionReassignments",
  "ListPartitionReassignments",
  "OffsetDelete",
};
constexpr int api_count = static_cast<int>(sizeof(api_names)
                                           / sizeof(api_names[0]));

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string upper(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::optional<long long> parse_int(const std::string& s) {
  if (s.empty())
    return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0')
    return std::nullopt;
  return v;
}

std::optional<int16_t> parse_api(const std::string& s) {
  if (auto n = parse_int(s)) {
    if (*n >= 0 && *n < 1000)
      return static_cast<int16_t>(*n);
    return std::nullopt;
  }
  std::string want = lower(s);
  const std::string suffix = "request";
  if (want.size() > suffix.size()
      && want.compare(want.size() - suffix.size(), suffix.size(), suffix) == 0)
    want.resize(want.size() - suffix.size());
  for (int i = 0; i < api_count; ++i)
    if (lower(api_names[i]) == want)
      return static_cast<int16_t>(i);
  return std::nullopt;
}

std::string api_name(int16_t key) {
  if (key >= 0 && key < api_count)
    return api_names[key];
  return "ApiKey" + std::to_string(key);
}

std::optional<rd_kafka_resp_err_t> parse_err(const std::string& s) {
  if (auto n = parse_int(s))
    return static_cast<rd_kafka_resp_err_t>(*n);
  std::string want = upper(s);
  const std::string prefix = "RD_KAFKA_RESP_ERR_";
  if (want.rfind(prefix, 0) == 0)
    want = want.substr(prefix.size());
  const rd_kafka_err_desc* descs = nullptr;
  size_t cnt = 0;
  rd_kafka_get_err_descs(&descs, &cnt);
  for (size_t i = 0; i < cnt; ++i)
    if (descs[i].name != nullptr && want == descs[i].name)
      return descs[i].code;
  if (want == "NO_ERROR" || want == "NONE")
    return RD_KAFKA_RESP_ERR_NO_ERROR;
  return std::nullopt;
}

std::optional<int32_t> parse_broker(const std::string& s) {
  if (lower(s) == "all")
    return -1;
  if (auto n = parse_int(s); n && *n >= -1 && *n <= 1000000)
    return static_cast<int32_t>(*n);
  return std::nullopt;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      if (!cur.empty())
        out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty())
    out.push_back(cur);
  return out;
}

std::vector<std::string> words(const std::string& line) {
  std::istringstream in{line};
  std::vector<std::string> out;
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

void say(const std::string& line) {
  std::fputs(line.c_str(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
}

std::string err_text(rd_kafka_resp_err_t err) {
  return std::string(rd_kafka_err2name(err)) + " (" + rd_kafka_err2str(err)
         + ")";
}

bool write_file_atomically(const std::string& path, const std::string& text,
                           std::string& error) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) {
    error = "cannot open " + tmp + ": " + std::strerror(errno);
    return false;
  }
  bool ok = std::fputs(text.c_str(), f) >= 0;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    error = "cannot write " + path + ": " + std::strerror(errno);
    std::remove(tmp.c_str());
    return false;
  }
  return true;
}

/// Buffers bytes from one control source and hands out complete lines.
struct line_source {
  std::string name;
  int fd = -1;
  bool is_fifo = false;
  bool is_regular = false;
  std::string buf;

  /// Reads what is available. Returns false on EOF (for stdin).
  bool pump(std::vector<std::string>& lines) {
    char chunk[4096];
    for (;;) {
      ssize_t n = ::read(fd, chunk, sizeof(chunk));
      if (n > 0) {
        buf.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n == 0) {
        split_lines(lines);
        return false;
      }
      if (errno == EINTR)
        continue;
      split_lines(lines);
      return errno == EAGAIN || errno == EWOULDBLOCK;
    }
  }

  void split_lines(std::vector<std::string>& lines) {
    size_t pos;
    while ((pos = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, pos);
      if (!line.empty() && line.back() == '\r')
        line.pop_back();
      lines.push_back(std::move(line));
      buf.erase(0, pos + 1);
    }
  }
};

class controller {
public:
  explicit controller(ces::embedded_broker& broker) : broker_(broker) {
  }

  /// Runs one command line; returns false when the process should exit.
  bool run(const std::string& line) {
    auto w = words(line);
    if (w.empty() || w[0][0] == '#')
      return true;
    const std::string cmd = lower(w[0]);
    auto* mc = broker_.cluster();
    if (cmd == "help") {
      for (auto* h : help_text)
        say(std::string("# ") + h);
      say("ok help");
    } else if (cmd == "ping") {
      say("ok pong");
    } else if (cmd == "bootstrap") {
      say("ok bootstrap=" + broker_.bootstraps());
    } else if (cmd == "down" || cmd == "up") {
      auto id = w.size() == 2 ? parse_broker(w[1]) : std::nullopt;
      if (!id)
        return fail(cmd + " needs a broker id (1.." + std::to_string(
                      broker_.broker_count()) + ") or all");
      auto err = cmd == "down" ? rd_kafka_mock_broker_set_down(mc, *id)
                               : rd_kafka_mock_broker_set_up(mc, *id);
      if (err)
        return fail(cmd + " " + w[1] + ": " + err_text(err));
      say("ok " + cmd + " " + w[1]);
    } else if (cmd == "rtt") {
      auto id = w.size() == 3 ? parse_broker(w[1]) : std::nullopt;
      auto ms = w.size() == 3 ? parse_int(w[2]) : std::nullopt;
      if (!id || !ms || *ms < 0 || *ms > 3600000)
        return fail("usage: rtt <broker_id|all> <ms>");
      auto err = rd_kafka_mock_broker_set_rtt(mc, *id, static_cast<int>(*ms));
      if (err)
        return fail("rtt " + w[1] + ": " + err_text(err));
      say("ok rtt " + w[1] + " " + w[2]);
    } else if (cmd == "error") {
      if (w.size() < 3 || w.size() > 4)
        return fail("usage: error <api> <err> [count]");
      auto api = parse_api(w[1]);
      if (!api)
        return fail("unknown api '" + w[1] + "'");
      auto err = parse_err(w[2]);
      if (!err)
        return fail("unknown error '" + w[2] + "'");
      long long count = 1;
      if (w.size() == 4) {
        auto n = parse_int(w[3]);
        if (!n || *n < 1 || *n > 1000000)
          return fail("count must be 1..1000000");
        count = *n;
      }
      std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(count), *err);
      rd_kafka_mock_push_request_errors_array(mc, *api, errs.size(),
                                              errs.data());
      say("ok error " + api_name(*api) + " " + rd_kafka_err2name(*err) + " "
          + std::to_string(count));
    } else if (cmd == "clear-errors") {
      auto api = w.size() == 2 ? parse_api(w[1]) : std::nullopt;
      if (!api)
        return fail("usage: clear-errors <api>");
      rd_kafka_mock_clear_request_errors(mc, *api);
      say("ok clear-errors " + api_name(*api));
    } else if (cmd == "topic-error") {
      if (w.size() != 3)
        return fail("usage: topic-error <topic> <err>");
      auto err = parse_err(w[2]);
      if (!err)
        return fail("unknown error '" + w[2] + "'");
      rd_kafka_mock_topic_set_error(mc, w[1].c_str(), *err);
      say("ok topic-error " + w[1] + " " + rd_kafka_err2name(*err));
    } else if (cmd == "create-topic") {
      auto n = w.size() == 3 ? parse_int(w[2]) : std::nullopt;
      if (!n || *n < 1 || *n > 10000)
        return fail("usage: create-topic <topic> <partitions>");
      try {
        broker_.create_topic(w[1], static_cast<int>(*n));
      } catch (const std::exception& e) {
        return fail(e.what());
      }
      say("ok create-topic " + w[1] + " " + w[2]);
    } else if (cmd == "watermarks") {
      if (w.size() > 2)
        return fail("usage: watermarks [topic]");
      try {
        auto wms = broker_.watermarks();
        size_t parts = 0;
        size_t errors = 0;
        long long msgs = 0;
        for (const auto& wm : wms) {
          if (w.size() == 2 && wm.topic != w[1])
            continue;
          if (!wm.error.empty()) {
            ++errors;
            say("watermark-error " + wm.topic + " " + std::to_string(
                  wm.partition) + " " + wm.error);
            continue;
          }
          ++parts;
          msgs += wm.high - wm.low;
          say("watermark " + wm.topic + " " + std::to_string(wm.partition)
              + " " + std::to_string(wm.low) + " " + std::to_string(wm.high));
        }
        say("ok watermarks partitions=" + std::to_string(parts)
            + " messages=" + std::to_string(msgs)
            + " errors=" + std::to_string(errors));
      } catch (const std::exception& e) {
        return fail(std::string("watermarks: ") + e.what());
      }
    } else if (cmd == "shutdown" || cmd == "quit" || cmd == "exit") {
      say("ok shutdown");
      return false;
    } else {
      return fail("unknown command '" + w[0] + "' (try help)");
    }
    return true;
  }

private:
  bool fail(const std::string& msg) {
    say("error " + msg);
    return true;
  }

  ces::embedded_broker& broker_;
};

struct cli {
  std::vector<std::string> topics{"apexflow.leads.created",
                                  "apexflow.jobs.created"};
  int partitions = 8;
  int brokers = 1;
  std::string bootstrap_file;
  bool control_stdin = false;
  std::string control_path;
  std::string debug;
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr, "crm-mock-broker: %s\n%s", msg.c_str(), usage_text);
  std::exit(2);
}

cli parse_cli(int argc, char** argv) {
  cli c;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      auto eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        std::string v = a.substr(eq + 1);
        a = a.substr(0, eq);
        return v;
      }
      if (i + 1 >= argc)
        usage_error(a + " needs a value");
      return argv[++i];
    };
    auto number = [&](const std::string& name, const std::string& v, int lo,
                      int hi) {
      auto n = parse_int(v);
      if (!n || *n < lo || *n > hi)
        usage_error(name + " must be " + std::to_string(lo) + ".."
                    + std::to_string(hi));
      return static_cast<int>(*n);
    };
    std::string key = a.substr(0, a.find('='));
    if (key == "--help" || key == "-h") {
      std::fputs(usage_text, stdout);
      std::exit(0);
    } else if (key == "--topics") {
      c.topics = split(value(), ',');
    } else if (key == "--partitions") {
      c.partitions = number(key, value(), 1, 10000);
    } else if (key == "--brokers") {
      c.brokers = number(key, value(), 1, 64);
    } else if (key == "--bootstrap-file") {
      c.bootstrap_file = value();
    } else if (key == "--control-stdin") {
      c.control_stdin = true;
    } else if (key == "--control") {
      c.control_path = value();
    } else if (key == "--debug") {
      c.debug = value();
    } else {
      usage_error("unknown option " + a);
    }
  }
  return c;
}

} // namespace

int main(int argc, char** argv) {
  cli opts = parse_cli(argc, argv);

  // Block the termination signals in every thread (librdkafka's threads
  // inherit this mask) and take them through a signalfd in the main loop.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  int sig_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
  if (sig_fd < 0) {
    std::fprintf(stderr, "crm-mock-broker: signalfd: %s\n",
                 std::strerror(errno));
    return 1;
  }

  std::unique_ptr<ces::embedded_broker> broker;
  try {
    ces::embedded_broker::options bo;
    bo.topics = opts.topics;
    bo.partitions = opts.partitions;
    bo.brokers = opts.brokers;
    bo.debug = opts.debug;
    broker = std::make_unique<ces::embedded_broker>(bo);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "crm-mock-broker: %s\n", e.what());
    return 1;
  }

  // Control sources.
  std::vector<line_source> sources;
  bool created_fifo = false;
  if (opts.control_stdin) {
    int fl = ::fcntl(STDIN_FILENO, F_GETFL);
    ::fcntl(STDIN_FILENO, F_SETFL, fl | O_NONBLOCK);
    sources.push_back(line_source{"stdin", STDIN_FILENO, false, false, {}});
  }
  if (!opts.control_path.empty()) {
    struct stat st {};
    if (::stat(opts.control_path.c_str(), &st) != 0) {
      if (::mkfifo(opts.control_path.c_str(), 0600) != 0) {
        std::fprintf(stderr, "crm-mock-broker: mkfifo %s: %s\n",
                     opts.control_path.c_str(), std::strerror(errno));
        return 1;
      }
      created_fifo = true;
      st.st_mode = S_IFIFO;
    }
    line_source src;
    src.name = opts.control_path;
    src.is_fifo = S_ISFIFO(st.st_mode);
    src.is_regular = S_ISREG(st.st_mode);
    // A FIFO opened read-write never reports EOF when writers come and go.
    src.fd = ::open(opts.control_path.c_str(),
                    (src.is_fifo ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_CLOEXEC);
    if (src.fd < 0) {
      std::fprintf(stderr, "crm-mock-broker: open %s: %s\n",
                   opts.control_path.c_str(), std::strerror(errno));
      return 1;
    }
    sources.push_back(std::move(src));
  }

  const std::string bootstrap_line = "bootstrap=" + broker->bootstraps();
  if (!opts.bootstrap_file.empty()) {
    std::string error;
    if (!write_file_atomically(opts.bootstrap_file, bootstrap_line + "\n",
                               error)) {
      std::fprintf(stderr, "crm-mock-broker: %s\n", error.c_str());
      return 1;
    }
  }
  say(bootstrap_line);
  std::fprintf(stderr,
               "crm-mock-broker: %d broker(s) at %s, topics:", opts.brokers,
               broker->bootstraps().c_str());
  for (const auto& t : opts.topics)
    std::fprintf(stderr, " %s", t.c_str());
  std::fprintf(stderr, " (%d partitions each)\n", opts.partitions);

  controller ctl{*broker};
  bool running = true;
  while (running) {
    std::vector<pollfd> pfds;
    pfds.push_back(pollfd{sig_fd, POLLIN, 0});
    bool follow_file = false;
    for (auto& s : sources) {
      if (s.fd < 0)
        continue;
      if (s.is_regular)
        follow_file = true; // regular files are always "readable": tick
      else
        pfds.push_back(pollfd{s.fd, POLLIN, 0});
    }
    int rc = ::poll(pfds.data(), pfds.size(), follow_file ? 200 : -1);
    if (rc < 0 && errno != EINTR) {
      std::fprintf(stderr, "crm-mock-broker: poll: %s\n", std::strerror(errno));
      break;
    }
    if (pfds[0].revents & POLLIN) {
      signalfd_siginfo si{};
      if (::read(sig_fd, &si, sizeof(si)) == sizeof(si))
        std::fprintf(stderr, "crm-mock-broker: signal %u, shutting down\n",
                     si.ssi_signo);
      running = false;
      break;
    }
    for (auto& s : sources) {
      if (s.fd < 0)
        continue;
      std::vector<std::string> lines;
      bool open = s.pump(lines);
      for (const auto& l : lines)
        if (running && !ctl.run(l))
          running = false;
      if (!open && !s.is_regular) {
        // EOF on stdin: stop reading it, keep serving.
        std::fprintf(stderr, "crm-mock-broker: EOF on %s, still running\n",
                     s.name.c_str());
        if (s.fd != STDIN_FILENO)
          ::close(s.fd);
        s.fd = -1;
      }
    }
  }

  for (auto& s : sources)
    if (s.fd >= 0 && s.fd != STDIN_FILENO)
      ::close(s.fd);
  if (created_fifo)
    ::unlink(opts.control_path.c_str());
  broker.reset();
  std::fprintf(stderr, "crm-mock-broker: stopped\n");
  return 0;
}
