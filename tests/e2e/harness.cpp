#include "tests/e2e/harness.hpp"

#include <pqxx/pqxx>

#include <cstdlib>
#include <filesystem>
#include <fstream>
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

world::world(std::vector<std::string> ts, int partitions)
  : topics(std::move(ts)),
    broker_([&] {
      std::string list;
      for (auto& t : topics)
        list += (list.empty() ? "" : ",") + t;
      return child_process{{CES_MOCK_BROKER_BIN, "--topics", list,
                            "--partitions", std::to_string(partitions)}};
    }()) {
  auto line = broker_.wait_for_line(ces::test::stream::out, "bootstrap=", 20s);
  if (!line)
    throw std::runtime_error("mock broker did not start: "
                             + broker_.stderr_text());
  bootstrap_ = line->substr(line->find('=') + 1);
  db_url_ = pg().create_database();
  char tmpl[] = "/tmp/ces-e2e-XXXXXX";
  dir_ = mkdtemp(tmpl);
  metrics_port_ = ces::test::free_tcp_port();
  do
    http_port_ = ces::test::free_tcp_port();
  while (http_port_ == metrics_port_);
}

world::~world() {
  if (std::getenv("CES_KEEP_TEST_FILES") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string world::temp_path(const std::string& name) const {
  return dir_ + "/" + name;
}

std::vector<std::string> world::sink_args(std::vector<std::string> extra) const {
  std::string list;
  for (auto& t : topics)
    list += (list.empty() ? "" : ",") + t;
  std::vector<std::string> args{
    CES_SINK_BIN,
    "--kafka-bootstrap-servers=" + bootstrap_,
    "--kafka-topics=" + list,
    "--kafka-group-id=" + group,
    // The mock broker makes a restarted member wait for the old one's
    // session to expire (../shared/MOCK-BROKER.md): keep it short.
    "--kafka-session-timeout-ms=6000",
    "--database-url=" + db_url_,
    "--metrics-port=" + std::to_string(metrics_port_),
    "--http-port=" + std::to_string(http_port_),
    "--metrics-address=127.0.0.1",
    "--http-address=127.0.0.1",
    "--log-format=json",
  };
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

child_process world::start_sink(std::vector<std::string> extra) {
  ces::test::spawn_options opts;
  opts.stderr_path = temp_path("sink.log");
  opts.append = true; // restarts of a test append to one log
  auto offset = [&] {
    std::error_code ec;
    auto n = std::filesystem::file_size(opts.stderr_path, ec);
    return ec ? size_t{0} : static_cast<size_t>(n);
  }();
  child_process sink{sink_args(std::move(extra)), opts};
  if (!sink.wait_for_line(ces::test::stream::err, "partitions_assigned", 30s,
                          offset))
    throw std::runtime_error("sink did not join the group: "
                             + sink.stderr_text());
  return sink;
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
  std::string list;
  for (auto& t : topics)
    list += (list.empty() ? "" : ",") + t;
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
