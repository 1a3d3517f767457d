#include "tests/support/pg_fixture.hpp"

#include <pqxx/pqxx>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

extern char** environ;

namespace ces::test {

namespace {

namespace fs = std::filesystem;

/// A TCP port on 127.0.0.1 that was free a moment ago.
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0)
    throw std::runtime_error("pg_fixture: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("pg_fixture: cannot find a free port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string tail(const std::string& path, size_t lines) {
  std::ifstream in{path};
  std::deque<std::string> last;
  std::string line;
  while (std::getline(in, line)) {
    last.push_back(line);
    if (last.size() > lines)
      last.pop_front();
  }
  std::string out;
  for (auto& l : last)
    out += l + "\n";
  return out;
}

} // namespace

pg_fixture::pg_fixture(std::string database) : database_(std::move(database)) {
  auto env_bindir = std::getenv("PG_BINDIR");
  bindir_ = env_bindir != nullptr ? env_bindir : "/usr/lib/postgresql/15/bin";
  auto base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base != nullptr ? base : "/tmp")
                     + "/ces-pg-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("pg_fixture: mkdtemp failed: "
                             + std::string(std::strerror(errno)));
  dir_ = tmpl;
  start_watchdog();
  try {
    if (::geteuid() == 0) {
      auto pw = ::getpwnam("nobody");
      if (pw == nullptr || ::chown(dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0)
        throw std::runtime_error("pg_fixture: cannot give " + dir_
                                 + " to nobody");
    }
    if (run_pg("initdb", {"-D", dir_ + "/data", "-A", "trust", "-E", "UTF8",
                          "--locale=C", "-U", "postgres", "--no-sync"})
        != 0)
      throw std::runtime_error("pg_fixture: initdb failed:\n"
                               + tail(dir_ + "/tool.log", 30));
    bool started = false;
    for (int attempt = 0; attempt < 5 && !started; ++attempt) {
      port_ = free_port();
      started = try_start();
    }
    if (!started)
      throw std::runtime_error("pg_fixture: pg_ctl start failed:\n"
                               + log_tail());
    exec("CREATE DATABASE \"" + database_ + "\"", "postgres");
  } catch (...) {
    if (running_)
      stop("immediate");
    std::error_code ec;
    fs::remove_all(dir_, ec);
    stop_watchdog();
    throw;
  }
}

pg_fixture::~pg_fixture() {
  if (running_) {
    try {
      stop("immediate");
    } catch (...) {
      // nop
    }
  }
  auto keep = std::getenv("CES_PG_KEEP");
  if (keep == nullptr || std::string(keep) != "1") {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  stop_watchdog();
}

void pg_fixture::start_watchdog() {
  // sh reads its stdin: "done" from stop_watchdog() means all is cleaned up;
  // EOF without it means this process died, so sh cleans up.
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    return; // best effort
  std::string as_pg = ::geteuid() == 0 ? "/usr/sbin/runuser -u nobody -- " : "";
  std::string script =
    "read line && exit 0; " + as_pg + "\"$1/pg_ctl\" -D \"$2/data\" -m immediate"
    " -w stop >/dev/null 2>&1; rm -rf \"$2\"";
  std::vector<std::string> argv = {"/bin/sh", "-c", script, "pg_fixture_watchdog",
                                   bindir_, dir_};
  std::vector<char*> cargv;
  for (auto& a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, fds[0], 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID); // survives Ctrl-C
  pid_t pid = 0;
  if (::posix_spawn(&pid, cargv[0], &fa, &attr, cargv.data(), environ) == 0) {
    watchdog_pid_ = pid;
    watchdog_fd_ = fds[1];
  } else {
    ::close(fds[1]);
  }
  ::close(fds[0]);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
}

void pg_fixture::stop_watchdog() {
  if (watchdog_fd_ < 0)
    return;
  auto done = "done\n";
  [[maybe_unused]] auto n = ::write(watchdog_fd_, done, 5);
  ::close(watchdog_fd_);
  watchdog_fd_ = -1;
  int status = 0;
  while (::waitpid(watchdog_pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

std::string pg_fixture::url() const {
  return url(database_);
}

std::string pg_fixture::url(const std::string& database) const {
  return "postgresql://postgres@127.0.0.1:" + std::to_string(port_) + "/"
         + database;
}

std::string pg_fixture::create_database(std::string name) {
  if (name.empty())
    name = database_ + "_" + std::to_string(++next_db_);
  exec("CREATE DATABASE \"" + name + "\"", "postgres");
  return url(name);
}

int pg_fixture::run_pg(const std::string& tool,
                       const std::vector<std::string>& args) const {
  std::vector<std::string> argv;
  if (::geteuid() == 0)
    argv = {"/usr/sbin/runuser", "-u", "nobody", "--"};
  argv.push_back(bindir_ + "/" + tool);
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv)
    cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  auto log = dir_ + "/tool.log";
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(),
                                   O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw std::runtime_error("pg_fixture: cannot run " + argv[0] + ": "
                             + std::strerror(rc));
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool pg_fixture::try_start() {
  auto opts = "-p " + std::to_string(port_) + " -k " + dir_
              + " -c listen_addresses=127.0.0.1";
  running_ = run_pg("pg_ctl", {"-D", dir_ + "/data", "-l", dir_ + "/log",
                               "-w", "-t", "60", "-o", opts, "start"})
             == 0;
  return running_;
}

void pg_fixture::stop(const std::string& mode) {
  if (!running_)
    return;
  auto rc = run_pg("pg_ctl", {"-D", dir_ + "/data", "-m", mode, "-w", "-t",
                              "60", "stop"});
  if (rc != 0)
    throw std::runtime_error("pg_fixture: pg_ctl stop failed:\n"
                             + tail(dir_ + "/tool.log", 20));
  running_ = false;
}

void pg_fixture::start() {
  if (running_)
    return;
  if (!try_start())
    throw std::runtime_error("pg_fixture: pg_ctl start failed:\n"
                             + log_tail());
}

void pg_fixture::exec(const std::string& sql,
                      const std::string& database) const {
  pqxx::connection c{url(database.empty() ? database_ : database)};
  pqxx::quiet_errorhandler quiet{c};
  pqxx::nontransaction tx{c};
  tx.exec(sql);
}

std::string pg_fixture::query_value(const std::string& sql,
                                    const std::string& database) const {
  pqxx::connection c{url(database.empty() ? database_ : database)};
  pqxx::quiet_errorhandler quiet{c};
  pqxx::nontransaction tx{c};
  auto r = tx.exec(sql);
  if (r.empty() || r[0][0].is_null())
    return "";
  return r[0][0].as<std::string>();
}

std::string pg_fixture::log_tail(size_t lines) const {
  return tail(dir_ + "/log", lines);
}

pg_fixture& shared_pg() {
  static std::mutex m;
  static std::unique_ptr<pg_fixture> pg;
  std::lock_guard<std::mutex> guard{m};
  if (!pg)
    pg = std::make_unique<pg_fixture>();
  return *pg;
}

} // namespace ces::test
