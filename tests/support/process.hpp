// Child processes and plain-socket HTTP for integration and end-to-end tests
// (no Catch2 dependency). POSIX/Linux only.
//
//   ces::test::spawn_options opts;
//   opts.pipe_stdin = true;
//   ces::test::child_process broker{{CES_MOCK_BROKER_BIN, "--control-stdin"},
//                                   opts};
//   auto line = broker.wait_for_line(ces::test::stream::out, "bootstrap=",
//                                    std::chrono::seconds(10));
//   broker.write_stdin("down 1\n");
//   broker.kill9();
//
// Notes:
// * The child's stdout/stderr go to files (given, or created in a fresh temp
//   directory that the object removes unless CES_KEEP_TEST_FILES is set);
//   wait_for_line() follows those files, so output is never lost and can be
//   read after the child died.
// * The child gets PR_SET_PDEATHSIG(SIGKILL): if the test process dies, its
//   children die too (the signal fires when the spawning *thread* exits, so
//   spawn from a thread that outlives the child, e.g. the test's own thread).
// * The first spawn ignores SIGPIPE in the test process, so writing to the
//   stdin of a dead child fails with EPIPE instead of killing the test.
// * The destructor SIGKILLs and reaps a child that is still running.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace ces::test {

/// How a child ended.
struct exit_status {
  bool exited = false;   // normal exit: `code` is valid
  int code = -1;         // exit code when exited
  bool signaled = false; // killed by a signal: `signal` is valid
  int signal = 0;

  /// Exited with code 0.
  bool success() const noexcept {
    return exited && code == 0;
  }
  /// "exit 3", "signal 9 (Killed)".
  std::string describe() const;
};

enum class stream { out, err };

struct spawn_options {
  /// Extra environment variables (added to, or overriding, the test's env).
  std::vector<std::pair<std::string, std::string>> env;
  /// Environment variables to remove.
  std::vector<std::string> unset_env;
  /// Files for the child's stdout/stderr; empty: a file in a temp directory.
  std::string stdout_path;
  std::string stderr_path;
  /// Append to existing files instead of truncating them.
  bool append = false;
  /// true: the child's stdin is a pipe (write_stdin/close_stdin);
  /// false: the child's stdin is /dev/null.
  bool pipe_stdin = false;
  /// Working directory of the child; empty: the test's.
  std::string cwd;
};

/// One child process. Not copyable; movable.
class child_process {
public:
  /// Spawns argv[0] (searched in PATH if it has no '/') with argv.
  /// Throws std::runtime_error if it cannot be started (including exec
  /// failure, which is reported by the child through a CLOEXEC pipe).
  explicit child_process(std::vector<std::string> argv,
                         spawn_options opts = {});
  ~child_process();

  child_process(child_process&& other) noexcept;
  child_process& operator=(child_process&& other) noexcept;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  pid_t pid() const noexcept {
    return pid_;
  }
  const std::vector<std::string>& argv() const noexcept {
    return argv_;
  }

  /// Still running (reaps it, recording its status, if it has ended).
  bool running();

  /// Sends `sig`; false if the child has already been reaped.
  bool signal(int sig);

  /// SIGKILL and reap. Returns the exit status.
  exit_status kill9();

  /// Waits up to `timeout` for the child to end; its status, or nullopt if
  /// it is still running.
  std::optional<exit_status> wait_exit(std::chrono::milliseconds timeout);

  /// SIGTERM, wait up to `grace`, then SIGKILL. Returns the exit status.
  exit_status stop(std::chrono::milliseconds grace
                   = std::chrono::milliseconds{5000});

  /// The recorded status once the child has been reaped.
  const std::optional<exit_status>& status() const noexcept {
    return status_;
  }

  const std::string& stdout_path() const noexcept {
    return out_path_;
  }
  const std::string& stderr_path() const noexcept {
    return err_path_;
  }
  const std::string& path(stream s) const noexcept {
    return s == stream::out ? out_path_ : err_path_;
  }

  /// Everything the child wrote so far to stdout / stderr.
  std::string stdout_text() const;
  std::string stderr_text() const;
  /// Current size of the stdout/stderr file: pass it as `from` to
  /// wait_for_line to only see lines written after this point.
  size_t output_size(stream s) const;

  /// Waits until a complete line (ending in '\n') at or after byte offset
  /// `from` contains `needle`; returns the line (without '\n'), or nullopt
  /// on timeout or if the child ended without writing it.
  std::optional<std::string> wait_for_line(stream s, std::string_view needle,
                                           std::chrono::milliseconds timeout,
                                           size_t from = 0);
  /// Same with a regex (std::regex_search on each line).
  std::optional<std::string> wait_for_regex(stream s, const std::regex& re,
                                            std::chrono::milliseconds timeout,
                                            size_t from = 0);

  /// Writes all of `data` to the child's stdin (needs pipe_stdin). False if
  /// the pipe is closed or the child is gone.
  bool write_stdin(std::string_view data);
  /// Closes the child's stdin (EOF for the child).
  void close_stdin();

  /// Diagnostic text for test failures: argv, status, tails of both files.
  std::string describe(size_t tail_bytes = 2000) const;

private:
  template <class Match>
  std::optional<std::string> wait_for(stream s, Match&& match,
                                      std::chrono::milliseconds timeout,
                                      size_t from);
  void reap(int wstatus);
  void cleanup_files() noexcept;

  std::vector<std::string> argv_;
  pid_t pid_ = -1;
  int stdin_fd_ = -1;
  std::optional<exit_status> status_;
  std::string out_path_;
  std::string err_path_;
  std::string temp_dir_; // created by us, removed in the destructor
};

/// Reads a whole file ("" if it does not exist).
std::string read_file(const std::string& path);

/// Creates a fresh directory under $TMPDIR (or /tmp) named prefix.XXXXXX.
std::string make_temp_dir(const std::string& prefix = "ces-test");

/// Removes a directory tree (best effort).
void remove_tree(const std::string& path) noexcept;

/// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
/// it, close). Another process can still take it before you bind it.
uint16_t free_tcp_port();

/// Waits until something accepts TCP connections on host:port.
bool wait_for_tcp(const std::string& host, uint16_t port,
                  std::chrono::milliseconds timeout);

struct http_response {
  int status = 0; // 0: no response (connect failed, timeout, bad response)
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers; // keys lowercase
  std::string body;
  std::string error; // why status is 0

  /// Value of a header (key in lowercase), or "".
  std::string header(std::string_view lowercase_key) const;
};

/// Headers every http_request() sends unless `headers` has an Authorization
/// header (the e2e harness puts the world's admin key here). Not
/// thread-safe: set it before requests run.
std::vector<std::pair<std::string, std::string>>& default_http_headers();

/// One HTTP/1.1 request with `Connection: close` over a plain socket; reads
/// the response until the server closes (handles Content-Length and chunked
/// bodies). Never throws for network problems: see http_response::error.
http_response http_request(const std::string& method, const std::string& host,
                           uint16_t port, const std::string& target,
                           const std::string& body = {},
                           const std::string& content_type
                           = "application/json",
                           std::chrono::milliseconds timeout
                           = std::chrono::milliseconds{5000},
                           const std::vector<std::pair<std::string,
                                                       std::string>>& headers
                           = {});

inline http_response http_get(const std::string& host, uint16_t port,
                              const std::string& target,
                              std::chrono::milliseconds timeout
                              = std::chrono::milliseconds{5000}) {
  return http_request("GET", host, port, target, {}, {}, timeout);
}

inline http_response http_post(const std::string& host, uint16_t port,
                               const std::string& target,
                               const std::string& body = {},
                               const std::string& content_type
                               = "application/json",
                               std::chrono::milliseconds timeout
                               = std::chrono::milliseconds{5000}) {
  return http_request("POST", host, port, target, body, content_type, timeout);
}

} // namespace ces::test
