// A throwaway PostgreSQL 15 cluster for tests: initdb into a temp dir, start
// on a free 127.0.0.1 port (unix socket inside the temp dir), trust auth,
// fsync on; stopped and removed by the destructor. Same logic as
// scripts/pg-tmp.sh. No Catch2 here.
//
// PostgreSQL refuses to run as root: as root the temp dir is given to
// `nobody` and initdb/pg_ctl run via `runuser -u nobody --`.
// A watchdog process (its own session) stops the server and removes the
// directory if the test process dies without running the destructor.
// Environment: PG_BINDIR (default /usr/lib/postgresql/15/bin);
// CES_PG_KEEP=1 keeps the cluster's directory (the server is still stopped).
#pragma once

#include <string>
#include <vector>

namespace ces::test {

class pg_fixture {
public:
  /// Creates and starts a cluster with database `database`. Throws
  /// std::runtime_error (with the tail of the server log) on failure.
  explicit pg_fixture(std::string database = "ces_test");
  ~pg_fixture();
  pg_fixture(const pg_fixture&) = delete;
  pg_fixture& operator=(const pg_fixture&) = delete;

  /// postgresql://postgres@127.0.0.1:PORT/<database>
  std::string url() const;

  /// The URL of another database of the cluster.
  std::string url(const std::string& database) const;

  /// Creates database `name` (a fresh unique name when empty) and returns its
  /// URL.
  std::string create_database(std::string name = "");

  int port() const {
    return port_;
  }

  /// The cluster's directory (data in dir()/data, log in dir()/log).
  const std::string& dir() const {
    return dir_;
  }

  /// Stops the server: mode "fast" (clean) or "immediate" (crash-like).
  void stop(const std::string& mode = "fast");

  /// Starts the stopped server again on the same port.
  void start();

  bool running() const {
    return running_;
  }

  /// Runs `sql` on `database` (default: the fixture's) in autocommit mode.
  void exec(const std::string& sql, const std::string& database = "") const;

  /// Runs `sql` and returns the first column of the first row ("" when no
  /// row or NULL).
  std::string query_value(const std::string& sql,
                          const std::string& database = "") const;

  /// The last `lines` lines of the server log.
  std::string log_tail(size_t lines = 30) const;

private:
  /// Runs a PostgreSQL binary (as `nobody` when root); output appended to
  /// dir()/tool.log. Returns its exit status.
  int run_pg(const std::string& tool, const std::vector<std::string>& args) const;
  bool try_start();
  void start_watchdog();
  void stop_watchdog();

  std::string dir_;
  std::string database_;
  std::string bindir_;
  int port_ = 0;
  bool running_ = false;
  int next_db_ = 0;
  int watchdog_fd_ = -1; // write end of the watchdog's stdin
  int watchdog_pid_ = 0;
};

/// One cluster per test process, started on first use (thread-safe) and
/// removed at exit.
pg_fixture& shared_pg();

} // namespace ces::test
