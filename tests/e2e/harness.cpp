#include "tests/e2e/harness.hpp"

#include <random>

#include <librdkafka/rdkafka.h>
#include <pqxx/pqxx>

#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace ces::e2e {

ces::test::pg_fixture& pg() {
  static ces::test::pg_fixture instance{"e2e"};
  return instance;
}

std::vector<manifest_entry> read_manifest(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    throw std::runtime_error("cannot read manifest " + path);
  std::vector<manifest_entry> result;
  for (std::string line; std::getline(in, line);) {
    if (line.empty())
      continue;
    std::istringstream fields{line};
    std::string topic, partition, offset, kind;
    std::getline(fields, topic, '\t');
    std::getline(fields, partition, '\t');
    std::getline(fields, offset, '\t');
    std::getline(fields, kind, '\t');
    result.push_back(manifest_entry{
      coords{topic, std::stoi(partition), std::stoll(offset)}, kind});
  }
  return result;
}

bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (pred())
      return true;
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(100ms);
  }
}

bool real_kafka() {
  const char* v = std::getenv("CES_TEST_KAFKA");
  std::string broker = v == nullptr ? "" : v;
  if (broker.empty() || broker == "mock")
    return false;
  if (broker == "real")
    return true;
  throw std::runtime_error("CES_TEST_KAFKA must be `mock` or `real`, not `"
                           + broker + "`");
}

namespace {

std::string join(const std::vector<std::string>& xs) {
  std::string list;
  for (auto& x : xs)
    list += (list.empty() ? "" : ",") + x;
  return list;
}

/// Runs scripts/kafka.sh to completion; its stdout, or throws. `extra`
/// follows `args`.
std::string run_kafka_sh(std::vector<std::string> args,
                         std::chrono::milliseconds timeout,
                         const std::vector<std::string>& extra = {}) {
  args.insert(args.begin(), CES_KAFKA_SH);
  args.insert(args.end(), extra.begin(), extra.end());
  child_process p{args};
  auto st = p.wait_exit(timeout);
  if (!st || !st->success())
    throw std::runtime_error("kafka.sh failed: " + p.describe());
  return p.stdout_text();
}

/// Stops the real broker (if `kafka_dir` is set) and removes the world's
/// directory: the destructor's work, also done when the constructor fails.
void release_world(const std::string& kafka_dir,
                   const std::string& dir) noexcept {
  if (!kafka_dir.empty()) {
    try {
      run_kafka_sh({"stop", kafka_dir}, 120s);
    } catch (const std::exception& e) {
      fprintf(stderr, "world: %s\n", e.what());
    }
  }
  if (std::getenv("CES_KEEP_TEST_FILES") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
}

} // namespace

world::world(std::vector<std::string> ts, int partitions,
             world_options options)
  : topics(std::move(ts)), partitions_(partitions) {
  char tmpl[] = "/tmp/ces-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  try {
    if (real_kafka()) {
      if (options.broker_control)
        throw std::runtime_error("broker_control needs the mock broker "
                                 "(CES_TEST_KAFKA=mock)");
      kafka_dir_ = temp_path("kafka");
      // The first run fetches the jars (minutes); later starts take seconds
      // (tens of seconds on a loaded machine). --owner: the cluster goes
      // away with this process even if the destructor never runs.
      // message.max.bytes: as crm-produce's producer with --oversize, so
      // too_large records reach the sink (Kafka's default is 1 MiB).
      std::vector<std::string> args{
        "start",  kafka_dir_, "--topics", join(topics),
        "--partitions", std::to_string(partitions),
        "--nodes", std::to_string(options.nodes),
        "--config", "message.max.bytes=4194304",
        // group.min.session.timeout.ms: the fault suite's members use a 3 s
        // session (Kafka's default floor is 6 s).
        "--config", "group.min.session.timeout.ms=1000",
        "--owner", std::to_string(getpid())};
      for (auto& kv : options.kafka_config) {
        args.emplace_back("--config");
        args.push_back(kv);
      }
      auto out = run_kafka_sh(std::move(args), 600s, options.kafka_args);
      std::istringstream lines{out};
      for (std::string l; std::getline(lines, l);)
        if (!l.empty())
          bootstrap_ = l; // the last line
      std::ifstream sasl{kafka_dir_ + "/bootstrap-sasl"};
      std::getline(sasl, sasl_bootstrap_);
    } else {
      std::vector<std::string> argv{CES_MOCK_BROKER_BIN, "--topics",
                                    join(topics), "--partitions",
                                    std::to_string(partitions)};
      ces::test::spawn_options opts;
      if (options.broker_control) {
        argv.emplace_back("--control-stdin");
        opts.pipe_stdin = true;
        broker_control_ = true;
      }
      broker_.emplace(argv, opts);
      auto line = broker_->wait_for_line(ces::test::stream::out,
                                         "bootstrap=", 20s);
      if (!line)
        throw std::runtime_error("mock broker did not start: "
                                 + broker_->stderr_text());
      bootstrap_ = line->substr(line->find('=') + 1);
    }
    if (options.own_cluster) {
      own_cluster_ = std::make_unique<ces::test::pg_fixture>("ces_world");
      cluster_ = own_cluster_.get();
      db_url_ = cluster_->url();
    } else {
      cluster_ = &pg();
      db_url_ = cluster_->create_database();
    }
  } catch (...) {
    release_world(kafka_dir_, dir_);
    throw;
  }
  metrics_port_ = ces::test::free_tcp_port();
  do
    http_port_ = ces::test::free_tcp_port();
  while (http_port_ == metrics_port_);
  instance_ports_[0] = {metrics_port_, http_port_};
  // Auth is on by default: every world's sink registers an admin key from
  // ADMIN_TOKEN_FILE, and the tests' HTTP requests send it unless they set
  // an Authorization header of their own.
  {
    static const char* b64url =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::random_device rd;
    admin_key_ = "ces_";
    for (int i = 0; i < 43; ++i)
      admin_key_ += b64url[rd() % 64];
    std::ofstream f{temp_path("admin.key")};
    f << admin_key_ << "\n";
  }
  ces::test::default_http_headers()
    = {{"Authorization", "Bearer " + admin_key_}};
}

world::~world() {
  release_world(kafka_dir_, dir_);
}

int world::node_pid(int node) const {
  if (kafka_dir_.empty())
    return -1;
  std::ifstream in{kafka_dir_ + "/node-" + std::to_string(node) + "/pid"};
  int pid = -1;
  if (!(in >> pid) || pid <= 0 || ::kill(pid, 0) != 0)
    return -1;
  return pid;
}

void world::kill_node(int node, const std::string& signal) {
  if (kafka_dir_.empty())
    throw std::runtime_error("kill_node: needs the real broker");
  run_kafka_sh({"kill", kafka_dir_, "--node", std::to_string(node),
                "--signal", signal},
               120s);
}

void world::start_node(int node) {
  if (kafka_dir_.empty())
    throw std::runtime_error("start_node: needs the real broker");
  run_kafka_sh({"start-node", kafka_dir_, "--node", std::to_string(node)},
               300s);
}

std::string world::temp_path(const std::string& name) const {
  return dir_ + "/" + name;
}

std::vector<std::string> world::sink_args(std::vector<std::string> extra) const {
  auto list = join(topics);
  std::vector<std::string> args{
    CES_SINK_BIN,
    "--kafka-bootstrap-servers=" + bootstrap_,
    "--kafka-topics=" + list,
    "--kafka-group-id=" + group,
    // The mock broker makes a restarted member wait for the old one's
    // session to expire (actors/kafka/embedded_broker.hpp): keep it short.
    "--kafka-session-timeout-ms=6000",
    "--database-url=" + db_url_,
    "--metrics-port=" + std::to_string(metrics_port_),
    "--http-port=" + std::to_string(http_port_),
    "--metrics-address=127.0.0.1",
    "--http-address=127.0.0.1",
    "--log-format=json",
    "--admin-token-file=" + temp_path("admin.key"),
  };
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

child_process world::start_sink(std::vector<std::string> extra) {
  return start_instance(0, std::move(extra));
}

std::string world::sink_log(int instance) const {
  return temp_path(instance == 0 ? "sink.log"
                                 : "sink-" + std::to_string(instance) + ".log");
}

uint16_t world::metrics_port(int instance) {
  auto it = instance_ports_.find(instance);
  if (it != instance_ports_.end())
    return it->second.first;
  std::set<uint16_t> taken;
  for (auto& [i, ports] : instance_ports_) {
    taken.insert(ports.first);
    taken.insert(ports.second);
  }
  uint16_t m, h;
  do
    m = ces::test::free_tcp_port();
  while (taken.count(m) != 0);
  taken.insert(m);
  do
    h = ces::test::free_tcp_port();
  while (taken.count(h) != 0);
  instance_ports_[instance] = {m, h};
  return m;
}

uint16_t world::http_port(int instance) {
  metrics_port(instance); // allocates the instance's ports
  return instance_ports_[instance].second;
}

std::vector<std::string> world::instance_args(int instance,
                                              std::vector<std::string> extra) {
  if (instance == 0)
    return sink_args(std::move(extra));
  auto m = metrics_port(instance);
  auto h = instance_ports_[instance].second;
  auto args = sink_args();
  for (auto& a : args) {
    if (a.rfind("--metrics-port=", 0) == 0)
      a = "--metrics-port=" + std::to_string(m);
    else if (a.rfind("--http-port=", 0) == 0)
      a = "--http-port=" + std::to_string(h);
  }
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

child_process world::start_instance(int instance,
                                    std::vector<std::string> extra,
                                    bool wait_assigned) {
  ces::test::spawn_options opts;
  opts.stderr_path = sink_log(instance);
  opts.append = true; // restarts of a test append to one log
  auto offset = [&] {
    std::error_code ec;
    auto n = std::filesystem::file_size(opts.stderr_path, ec);
    return ec ? size_t{0} : static_cast<size_t>(n);
  }();
  child_process sink{instance_args(instance, std::move(extra)), opts};
  if (wait_assigned
      && !sink.wait_for_line(ces::test::stream::err, "partitions_assigned",
                             30s, offset))
    throw std::runtime_error("sink did not join the group: "
                             + sink.stderr_text());
  return sink;
}

std::string world::broker_command(const std::string& line,
                                  std::vector<std::string>* before,
                                  std::chrono::milliseconds timeout) {
  if (!broker_)
    throw std::runtime_error("broker_command '" + line
                             + "': the mock broker's fault control does not "
                               "exist on the real broker");
  auto& broker = *broker_;
  auto from = broker.output_size(ces::test::stream::out);
  if (!broker.write_stdin(line + "\n"))
    throw std::runtime_error("broker_command '" + line
                             + "': cannot write to the broker (started "
                               "without broker_control?)");
  static const std::regex answer{"^(ok|error)( |$)"};
  auto got = broker.wait_for_regex(ces::test::stream::out, answer, timeout,
                                    from);
  if (!got)
    throw std::runtime_error("broker_command '" + line + "': no answer: "
                             + broker.describe());
  if (before != nullptr) {
    auto text = broker.stdout_text().substr(from);
    std::istringstream in{text};
    for (std::string l; std::getline(in, l);) {
      if (std::regex_search(l, answer))
        break;
      before->push_back(l);
    }
  }
  return *got;
}

std::map<std::pair<std::string, int32_t>, int64_t> world::high_watermarks() {
  std::map<std::pair<std::string, int32_t>, int64_t> result;
  if (broker_control_) {
    std::vector<std::string> lines;
    auto answer = broker_command("watermarks", &lines);
    if (answer.rfind("ok", 0) != 0)
      throw std::runtime_error("watermarks: " + answer);
    for (auto& l : lines) {
      std::istringstream in{l};
      std::string tag, topic;
      int32_t partition;
      long long low, high;
      if (in >> tag >> topic >> partition >> low >> high && tag == "watermark")
        result[{topic, partition}] = high;
    }
    return result;
  }
  // ListOffsets through a group-less librdkafka consumer (the real broker,
  // or a mock without a control channel).
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_.c_str(), err,
                        sizeof err)
      != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"watermarks: "} + err);
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    throw std::runtime_error(std::string{"watermarks: "} + err);
  }
  std::unique_ptr<rd_kafka_t, void (*)(rd_kafka_t*)> guard{rk,
                                                           rd_kafka_destroy};
  for (auto& t : topics)
    for (int32_t p = 0; p < partitions_; ++p) {
      int64_t low = 0, high = 0;
      auto rc = rd_kafka_query_watermark_offsets(rk, t.c_str(), p, &low,
                                                 &high, 10000);
      if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
        throw std::runtime_error("watermarks of " + t + " ["
                                 + std::to_string(p)
                                 + "]: " + rd_kafka_err2str(rc));
      result[{t, p}] = high;
    }
  return result;
}

long long world::broker_messages() {
  long long total = 0;
  for (auto& [tp, high] : high_watermarks())
    total += high;
  return total;
}

std::vector<manifest_entry> world::produce(std::vector<std::string> args) {
  std::string manifest;
  auto p = start_producer(std::move(args), manifest);
  auto st = p.wait_exit(120s);
  if (!st || !st->success())
    throw std::runtime_error("crm-produce failed: " + p.stderr_text()
                             + p.stdout_text());
  return read_manifest(manifest);
}

child_process world::start_producer(std::vector<std::string> args,
                                    std::string& manifest) {
  static int counter = 0;
  manifest = temp_path("manifest-" + std::to_string(++counter) + ".tsv");
  auto list = join(topics);
  std::vector<std::string> argv{CES_PRODUCE_BIN,  "--bootstrap", bootstrap_,
                                "--topics",       list,          "--manifest",
                                manifest,         "--quiet"};
  argv.insert(argv.end(), args.begin(), args.end());
  return child_process{argv};
}

std::vector<std::vector<std::string>>
world::rows(const std::string& sql) const {
  pqxx::connection c{db_url_};
  pqxx::nontransaction tx{c};
  std::vector<std::vector<std::string>> result;
  for (auto row : tx.exec(sql)) {
    std::vector<std::string> r;
    for (auto field : row)
      r.push_back(field.is_null() ? "" : field.c_str());
    result.push_back(std::move(r));
  }
  return result;
}

std::string world::value(const std::string& sql) const {
  auto r = rows(sql);
  return r.empty() || r[0].empty() ? "" : r[0][0];
}

long long world::count(const std::string& sql) const {
  try {
    return std::stoll(value(sql));
  } catch (const pqxx::undefined_table&) {
    return -1; // before the sink's migrations ran
  }
}

namespace {

std::map<coords, int> coords_of(const world& w, const std::string& table) {
  std::map<coords, int> result;
  for (auto& r : w.rows("select topic, partition, \"offset\" from " + table))
    ++result[coords{r[0], std::stoi(r[1]), std::stoll(r[2])}];
  return result;
}

} // namespace

std::map<coords, int> world::journal_coords() const {
  return coords_of(*this, "event_journal");
}

std::map<coords, int> world::dlq_coords() const {
  return coords_of(*this, "event_dlq");
}

double metric(const std::string& exposition, const std::string& series) {
  std::istringstream in{exposition};
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, series.size(), series) == 0
        && line.size() > series.size() && line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  return -1;
}

} // namespace ces::e2e
