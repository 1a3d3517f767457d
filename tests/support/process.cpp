#include "tests/support/process.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace ces::test {

namespace {

using clock = std::chrono::steady_clock;

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

void ignore_sigpipe_once() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

exit_status decode(int wstatus) {
  exit_status st;
  if (WIFEXITED(wstatus)) {
    st.exited = true;
    st.code = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    st.signaled = true;
    st.signal = WTERMSIG(wstatus);
  }
  return st;
}

std::string tail(const std::string& text, size_t n) {
  if (text.size() <= n)
    return text;
  return "..." + text.substr(text.size() - n);
}

} // namespace

// ---- exit_status ------------------------------------------------------------

std::string exit_status::describe() const {
  if (exited)
    return "exit " + std::to_string(code);
  if (signaled) {
    const char* name = ::strsignal(signal);
    return "signal " + std::to_string(signal) + " ("
           + (name != nullptr ? name : "?") + ")";
  }
  return "unknown status";
}

// ---- files ------------------------------------------------------------------

std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return {};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string make_temp_dir(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr && *tmp ? tmp : "/tmp") + "/"
                      + prefix + ".XXXXXX";
  std::vector<char> buf(templ.begin(), templ.end());
  buf.push_back('\0');
  if (::mkdtemp(buf.data()) == nullptr)
    throw std::runtime_error(errno_text("mkdtemp"));
  return std::string(buf.data());
}

void remove_tree(const std::string& path) noexcept {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) {
        std::string name = e->d_name;
        if (name == "." || name == "..")
          continue;
        remove_tree(path + "/" + name);
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

// ---- child_process ----------------------------------------------------------

child_process::child_process(std::vector<std::string> argv,
                             spawn_options opts)
  : argv_(std::move(argv)) {
  if (argv_.empty())
    throw std::runtime_error("child_process: empty argv");
  ignore_sigpipe_once();

  out_path_ = opts.stdout_path;
  err_path_ = opts.stderr_path;
  if (out_path_.empty() || err_path_.empty()) {
    temp_dir_ = make_temp_dir("ces-child");
    std::string base = argv_[0].substr(argv_[0].find_last_of('/') + 1);
    if (out_path_.empty())
      out_path_ = temp_dir_ + "/" + base + ".stdout";
    if (err_path_.empty())
      err_path_ = temp_dir_ + "/" + base + ".stderr";
  }

  // Everything the child needs is prepared before fork(): after fork only
  // async-signal-safe calls are allowed (the test process has threads).
  const int oflags = O_WRONLY | O_CREAT | O_CLOEXEC
                     | (opts.append ? O_APPEND : O_TRUNC);
  int out_fd = ::open(out_path_.c_str(), oflags, 0644);
  if (out_fd < 0) {
    cleanup_files();
    throw std::runtime_error(errno_text(("open " + out_path_).c_str()));
  }
  int err_fd = out_path_ == err_path_ ? ::dup(out_fd)
                                      : ::open(err_path_.c_str(), oflags, 0644);
  if (err_fd < 0) {
    ::close(out_fd);
    cleanup_files();
    throw std::runtime_error(errno_text(("open " + err_path_).c_str()));
  }
  int in_pipe[2] = {-1, -1};
  int null_fd = -1;
  if (opts.pipe_stdin) {
    if (::pipe2(in_pipe, O_CLOEXEC) != 0) {
      ::close(out_fd);
      ::close(err_fd);
      cleanup_files();
      throw std::runtime_error(errno_text("pipe2"));
    }
  } else {
    null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  }
  int exec_pipe[2] = {-1, -1}; // reports exec failure (errno) to the parent
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    ::close(out_fd);
    ::close(err_fd);
    cleanup_files();
    throw std::runtime_error(errno_text("pipe2"));
  }

  std::vector<std::string> env_store;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    bool drop = std::find(opts.unset_env.begin(), opts.unset_env.end(), key)
                != opts.unset_env.end();
    for (const auto& [k, v] : opts.env)
      if (k == key)
        drop = true;
    if (!drop)
      env_store.push_back(std::move(kv));
  }
  for (const auto& [k, v] : opts.env)
    env_store.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_store)
    envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<char*> argvp;
  for (auto& s : argv_)
    argvp.push_back(s.data());
  argvp.push_back(nullptr);
  const char* cwd = opts.cwd.empty() ? nullptr : opts.cwd.c_str();
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    int saved = errno;
    for (int fd : {out_fd, err_fd, in_pipe[0], in_pipe[1], null_fd,
                   exec_pipe[0], exec_pipe[1]})
      if (fd >= 0)
        ::close(fd);
    cleanup_files();
    errno = saved;
    throw std::runtime_error(errno_text("fork"));
  }
  if (pid == 0) {
    // Child.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent)
      ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    int in_fd = opts.pipe_stdin ? in_pipe[0] : null_fd;
    if ((in_fd >= 0 && ::dup2(in_fd, STDIN_FILENO) < 0)
        || ::dup2(out_fd, STDOUT_FILENO) < 0
        || ::dup2(err_fd, STDERR_FILENO) < 0
        || (cwd != nullptr && ::chdir(cwd) != 0)) {
      int e = errno;
      (void) !::write(exec_pipe[1], &e, sizeof(e));
      ::_exit(127);
    }
    ::execvpe(argvp[0], argvp.data(), envp.data());
    int e = errno;
    (void) !::write(exec_pipe[1], &e, sizeof(e));
    ::_exit(127);
  }

  // Parent.
  pid_ = pid;
  ::close(out_fd);
  ::close(err_fd);
  if (null_fd >= 0)
    ::close(null_fd);
  if (opts.pipe_stdin) {
    ::close(in_pipe[0]);
    stdin_fd_ = in_pipe[1];
  }
  ::close(exec_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n == static_cast<ssize_t>(sizeof(child_errno))) {
    int wstatus = 0;
    ::waitpid(pid_, &wstatus, 0);
    pid_ = -1;
    if (stdin_fd_ >= 0)
      ::close(stdin_fd_);
    stdin_fd_ = -1;
    cleanup_files();
    throw std::runtime_error("child_process: cannot start " + argv_[0] + ": "
                             + std::strerror(child_errno));
  }
}

child_process::~child_process() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int wstatus = 0;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }
  if (stdin_fd_ >= 0)
    ::close(stdin_fd_);
  cleanup_files();
}

child_process::child_process(child_process&& other) noexcept
  : argv_(std::move(other.argv_)),
    pid_(std::exchange(other.pid_, -1)),
    stdin_fd_(std::exchange(other.stdin_fd_, -1)),
    status_(std::move(other.status_)),
    out_path_(std::move(other.out_path_)),
    err_path_(std::move(other.err_path_)),
    temp_dir_(std::exchange(other.temp_dir_, std::string{})) {
}

child_process& child_process::operator=(child_process&& other) noexcept {
  if (this != &other) {
    this->~child_process();
    new (this) child_process(std::move(other));
  }
  return *this;
}

void child_process::cleanup_files() noexcept {
  if (temp_dir_.empty())
    return;
  if (std::getenv("CES_KEEP_TEST_FILES") == nullptr)
    remove_tree(temp_dir_);
  temp_dir_.clear();
}

void child_process::reap(int wstatus) {
  status_ = decode(wstatus);
}

bool child_process::running() {
  if (pid_ <= 0 || status_)
    return false;
  int wstatus = 0;
  pid_t r = ::waitpid(pid_, &wstatus, WNOHANG);
  if (r == pid_) {
    reap(wstatus);
    return false;
  }
  return r == 0;
}

bool child_process::signal(int sig) {
  if (pid_ <= 0 || status_)
    return false;
  return ::kill(pid_, sig) == 0;
}

exit_status child_process::kill9() {
  if (pid_ > 0 && !status_) {
    ::kill(pid_, SIGKILL);
    int wstatus = 0;
    pid_t r;
    while ((r = ::waitpid(pid_, &wstatus, 0)) < 0 && errno == EINTR) {
    }
    if (r == pid_)
      reap(wstatus);
  }
  return status_.value_or(exit_status{});
}

std::optional<exit_status>
child_process::wait_exit(std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  auto pause = std::chrono::milliseconds{1};
  for (;;) {
    if (!running())
      return status_;
    if (clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds{20});
  }
}

exit_status child_process::stop(std::chrono::milliseconds grace) {
  if (running()) {
    signal(SIGTERM);
    if (auto st = wait_exit(grace))
      return *st;
    return kill9();
  }
  return status_.value_or(exit_status{});
}

std::string child_process::stdout_text() const {
  return read_file(out_path_);
}

std::string child_process::stderr_text() const {
  return read_file(err_path_);
}

size_t child_process::output_size(stream s) const {
  struct stat st {};
  if (::stat(path(s).c_str(), &st) != 0)
    return 0;
  return static_cast<size_t>(st.st_size);
}

template <class Match>
std::optional<std::string>
child_process::wait_for(stream s, Match&& match,
                        std::chrono::milliseconds timeout, size_t from) {
  const auto deadline = clock::now() + timeout;
  const std::string& file = path(s);
  size_t pos = from; // start of the first line not yet checked
  std::string pending;
  auto pause = std::chrono::milliseconds{1};
  for (;;) {
    // Check running() before reading, so output written just before the
    // child ended is still seen once more.
    const bool alive = running();
    std::ifstream in{file, std::ios::binary};
    if (in) {
      in.seekg(static_cast<std::streamoff>(pos));
      std::string chunk((std::istreambuf_iterator<char>(in)),
                        std::istreambuf_iterator<char>());
      size_t start = 0;
      size_t nl;
      while ((nl = chunk.find('\n', start)) != std::string::npos) {
        std::string line = chunk.substr(start, nl - start);
        pos += nl - start + 1;
        start = nl + 1;
        if (match(line))
          return line;
      }
    }
    if (!alive || clock::now() >= deadline)
      return std::nullopt;
    std::this_thread::sleep_for(pause);
    pause = std::min(pause * 2, std::chrono::milliseconds{20});
  }
}

std::optional<std::string>
child_process::wait_for_line(stream s, std::string_view needle,
                             std::chrono::milliseconds timeout, size_t from) {
  return wait_for(
    s,
    [&](const std::string& line) {
      return line.find(needle) != std::string::npos;
    },
    timeout, from);
}

std::optional<std::string>
child_process::wait_for_regex(stream s, const std::regex& re,
                              std::chrono::milliseconds timeout, size_t from) {
  return wait_for(
    s, [&](const std::string& line) { return std::regex_search(line, re); },
    timeout, from);
}

bool child_process::write_stdin(std::string_view data) {
  if (stdin_fd_ < 0)
    return false;
  while (!data.empty()) {
    ssize_t n = ::write(stdin_fd_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

void child_process::close_stdin() {
  if (stdin_fd_ >= 0) {
    ::close(stdin_fd_);
    stdin_fd_ = -1;
  }
}

std::string child_process::describe(size_t tail_bytes) const {
  std::string out = "command:";
  for (const auto& a : argv_)
    out += " " + a;
  out += "\npid: " + std::to_string(pid_);
  out += "\nstatus: " + (status_ ? status_->describe() : "running or unknown");
  out += "\n--- stdout (" + out_path_ + ") ---\n"
         + tail(stdout_text(), tail_bytes);
  out += "\n--- stderr (" + err_path_ + ") ---\n"
         + tail(stderr_text(), tail_bytes);
  return out;
}

// ---- sockets ----------------------------------------------------------------

uint16_t free_tcp_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    throw std::runtime_error(errno_text("socket"));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0
      || ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    throw std::runtime_error(errno_text("bind/getsockname"));
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

namespace {

/// Connects with a deadline; returns the fd or -1 with `error` set.
int connect_tcp(const std::string& host, uint16_t port,
                clock::time_point deadline, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) {
    error = std::string("getaddrinfo: ") + ::gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK,
                  ai->ai_protocol);
    if (fd < 0)
      continue;
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
      break;
    if (errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - clock::now())
                    .count();
      if (left > 0 && ::poll(&p, 1, static_cast<int>(left)) == 1) {
        int so_error = 0;
        socklen_t len = sizeof(so_error);
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &len);
        if (so_error == 0)
          break;
        errno = so_error;
      } else {
        errno = ETIMEDOUT;
      }
    }
    error = errno_text("connect");
    ::close(fd);
    fd = -1;
  }
  ::freeaddrinfo(res);
  return fd;
}

std::string lower(std::string s) {
  for (auto& c : s)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos)
    return {};
  size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

/// Decodes a chunked body; false if it is malformed or incomplete.
bool dechunk(const std::string& in, std::string& out) {
  size_t pos = 0;
  out.clear();
  for (;;) {
    size_t eol = in.find("\r\n", pos);
    if (eol == std::string::npos)
      return false;
    std::string size_line = in.substr(pos, eol - pos);
    size_t semi = size_line.find(';');
    if (semi != std::string::npos)
      size_line.resize(semi);
    char* end = nullptr;
    unsigned long size = std::strtoul(size_line.c_str(), &end, 16);
    if (end == size_line.c_str())
      return false;
    pos = eol + 2;
    if (size == 0)
      return true; // trailers ignored
    if (pos + size + 2 > in.size())
      return false;
    out.append(in, pos, size);
    pos += size + 2;
  }
}

} // namespace

bool wait_for_tcp(const std::string& host, uint16_t port,
                  std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  for (;;) {
    std::string error;
    auto attempt_deadline = std::min(deadline, clock::now()
                                                 + std::chrono::seconds(1));
    int fd = connect_tcp(host, port, attempt_deadline, error);
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    if (clock::now() >= deadline)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string http_response::header(std::string_view lowercase_key) const {
  for (const auto& [k, v] : headers)
    if (k == lowercase_key)
      return v;
  return {};
}

std::vector<std::pair<std::string, std::string>>& default_http_headers() {
  static std::vector<std::pair<std::string, std::string>> h;
  return h;
}

http_response
http_request(const std::string& method, const std::string& host, uint16_t port,
             const std::string& target, const std::string& body,
             const std::string& content_type,
             std::chrono::milliseconds timeout,
             const std::vector<std::pair<std::string, std::string>>& headers) {
  http_response resp;
  const auto deadline = clock::now() + timeout;
  int fd = connect_tcp(host, port, deadline, resp.error);
  if (fd < 0)
    return resp;

  std::string req = method + " " + target + " HTTP/1.1\r\nHost: " + host + ":"
                    + std::to_string(port)
                    + "\r\nConnection: close\r\nUser-Agent: ces-test\r\n";
  bool has_auth = false;
  for (const auto& [k, v] : headers) {
    req += k + ": " + v + "\r\n";
    has_auth = has_auth || lower(k) == "authorization";
  }
  if (!has_auth)
    for (const auto& [k, v] : default_http_headers())
      req += k + ": " + v + "\r\n";
  if (!body.empty() || method == "POST" || method == "PUT"
      || method == "PATCH") {
    if (!content_type.empty())
      req += "Content-Type: " + content_type + "\r\n";
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n";
  req += body;

  auto left_ms = [&] {
    return static_cast<int>(std::max<long long>(
      0, std::chrono::duration_cast<std::chrono::milliseconds>(deadline
                                                               - clock::now())
           .count()));
  };

  size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      pollfd p{fd, POLLOUT, 0};
      if (::poll(&p, 1, left_ms()) <= 0) {
        resp.error = "timeout while sending the request";
        ::close(fd);
        return resp;
      }
      continue;
    }
    resp.error = errno_text("send");
    ::close(fd);
    return resp;
  }

  std::string raw;
  char buf[16384];
  size_t header_end = std::string::npos;
  long long content_length = -1;
  bool chunked = false;
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      raw.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      break; // server closed: the response is complete
    } else if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) {
      pollfd p{fd, POLLIN, 0};
      int ms = left_ms();
      if (ms <= 0 || ::poll(&p, 1, ms) <= 0) {
        resp.error = "timeout while reading the response";
        ::close(fd);
        return resp;
      }
      continue;
    } else {
      if (errno == ECONNRESET && header_end != std::string::npos)
        break;
      resp.error = errno_text("recv");
      ::close(fd);
      return resp;
    }
    if (header_end == std::string::npos) {
      header_end = raw.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        std::istringstream hs{raw.substr(0, header_end)};
        std::string line;
        std::getline(hs, line);
        while (std::getline(hs, line)) {
          auto colon = line.find(':');
          if (colon == std::string::npos)
            continue;
          std::string k = lower(trim(line.substr(0, colon)));
          std::string v = trim(line.substr(colon + 1));
          if (k == "content-length")
            content_length = std::atoll(v.c_str());
          if (k == "transfer-encoding"
              && lower(v).find("chunked") != std::string::npos)
            chunked = true;
        }
      }
    }
    // Do not depend on the server closing when the length is known.
    if (header_end != std::string::npos && !chunked && content_length >= 0
        && raw.size() >= header_end + 4 + static_cast<size_t>(content_length))
      break;
    if (header_end != std::string::npos && chunked
        && raw.find("\r\n0\r\n", header_end) != std::string::npos
        && raw.size() >= 5 && raw.compare(raw.size() - 4, 4, "\r\n\r\n") == 0)
      break;
  }
  ::close(fd);

  if (header_end == std::string::npos) {
    resp.error = raw.empty() ? "connection closed without a response"
                             : "incomplete response headers";
    return resp;
  }
  std::istringstream hs{raw.substr(0, header_end)};
  std::string status_line;
  std::getline(hs, status_line);
  status_line = trim(status_line);
  // HTTP/1.1 200 OK
  auto sp1 = status_line.find(' ');
  if (status_line.rfind("HTTP/", 0) != 0 || sp1 == std::string::npos) {
    resp.error = "bad status line: " + status_line;
    return resp;
  }
  auto sp2 = status_line.find(' ', sp1 + 1);
  int status = std::atoi(status_line.substr(sp1 + 1, sp2 - sp1 - 1).c_str());
  resp.reason = sp2 == std::string::npos ? "" : status_line.substr(sp2 + 1);
  std::string line;
  while (std::getline(hs, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos)
      continue;
    resp.headers.emplace_back(lower(trim(line.substr(0, colon))),
                              trim(line.substr(colon + 1)));
  }
  std::string payload = raw.substr(header_end + 4);
  if (chunked) {
    if (!dechunk(payload, resp.body)) {
      resp.error = "malformed chunked body";
      return resp;
    }
  } else if (content_length >= 0) {
    if (payload.size() < static_cast<size_t>(content_length)) {
      resp.error = "body shorter than Content-Length";
      return resp;
    }
    resp.body = payload.substr(0, static_cast<size_t>(content_length));
  } else {
    resp.body = std::move(payload);
  }
  resp.status = status;
  return resp;
}

} // namespace ces::test
