// crm-events-sink: Kafka -> PostgreSQL journal on supervised CAF actors.
#include "actors/auth.hpp"
#include "actors/interfaces.hpp"
#include "actors/kafka/embedded_broker.hpp"
#include "actors/kafka/properties.hpp"
#include "actors/kafka_source.hpp"
#include "actors/spawn.hpp"
#include "actors/supervisor.hpp"
#include "api/json.hpp"
#include "api/keys_cli.hpp"
#include "api/metrics.hpp"
#include "api/server.hpp"
#include "config/config.hpp"
#include "config/logging.hpp"
#include "config/mask.hpp"
#include "config/version.hpp"
#include "storage/auth_store.hpp"
#include "storage/backoff.hpp"
#include "storage/journal.hpp"

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <malloc.h>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace {

using namespace std::chrono_literals;

sigset_t shutdown_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

/// Waits up to `timeout` for SIGTERM/SIGINT. Returns the signal or 0.
int wait_signal(const sigset_t& set, std::chrono::milliseconds timeout) {
  timespec ts{static_cast<time_t>(timeout.count() / 1000),
              static_cast<long>((timeout.count() % 1000) * 1000000)};
  auto sig = sigtimedwait(&set, nullptr, &ts);
  return sig > 0 ? sig : 0;
}

void write_file_atomically(const std::string& path, const std::string& text) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp};
    out << text << '\n';
  }
  std::rename(tmp.c_str(), path.c_str());
}

/// Runs `step` (PostgreSQL work), retrying with capped backoff while
/// PostgreSQL is unreachable. Returns false if a signal asked us to stop
/// meanwhile; other exceptions of `step` pass through.
template <class Step>
bool with_db_retry(const ces::settings& s, const sigset_t& signals,
                   Step step) {
  for (uint32_t attempt = 1;; ++attempt) {
    auto delay
      = ces::capped_backoff(std::chrono::milliseconds(s.db_retry_initial_ms),
                            std::chrono::milliseconds(s.db_retry_max_ms),
                            attempt);
    try {
      step();
      return true;
    } catch (const ces::storage::infra_error& e) {
      ces::log::event(spdlog::level::warn, "main", "db_unavailable",
                      {{"reason", e.what()},
                       {"attempt", static_cast<int64_t>(attempt)},
                       {"backoff_ms", static_cast<int64_t>(delay.count())}});
      if (wait_signal(signals, delay) != 0)
        return false;
    }
  }
}

/// Applies the migrations. Returns false if a signal asked us to stop while
/// PostgreSQL was unreachable; throws on a failed migration. `legacy` tells
/// whether this group has offsets from before migration 0003 to adopt.
bool migrate_with_retry(const ces::settings& s, const sigset_t& signals,
                        bool& legacy) {
  return with_db_retry(s, signals, [&] {
    auto applied = ces::storage::migrate(s.database_url,
                                                 s.journal_partition_interval);
    std::string versions;
    for (auto v : applied)
      versions += (versions.empty() ? "" : ",") + std::to_string(v);
    ces::log::event(spdlog::level::info, "main", "schema_ready",
                    {{"applied", versions.empty() ? "none" : versions}});
    legacy = ces::storage::legacy_offsets_pending(s.database_url,
                                                  s.kafka_group_id);
  });
}

/// The first start after migration 0003 with offsets this group stored
/// before it (keyed by group, without a cluster id): asks the Kafka cluster
/// for its id (retrying while it does not answer: never fence by anything
/// else) and adopts them under it. Later starts skip this: the consumer
/// learns the cluster id when it is assigned partitions. Returns false if a
/// signal asked us to stop meanwhile; throws std::runtime_error on a Kafka
/// configuration error.
bool adopt_legacy_offsets(const ces::settings& s, const sigset_t& signals) {
  ces::kafka_source_config kc;
  kc.bootstrap_servers = s.kafka_bootstrap_servers;
  kc.properties = s.kafka_properties;
  auto delay = std::chrono::milliseconds(1000);
  std::string id;
  for (int attempt = 1;; ++attempt) {
    id = ces::kafka_cluster_id(kc, std::chrono::milliseconds(5000));
    if (!id.empty())
      break;
    ces::log::event(spdlog::level::warn, "main", "kafka_cluster_id_unavailable",
                    {{"bootstrap", s.kafka_bootstrap_servers},
                     {"attempt", static_cast<int64_t>(attempt)},
                     {"backoff_ms", static_cast<int64_t>(delay.count())}});
    if (wait_signal(signals, delay) != 0)
      return false;
    delay = std::min(delay * 2, std::chrono::milliseconds(10000));
  }
  return with_db_retry(s, signals, [&] {
    auto adopted =
      ces::storage::adopt_group_offsets(s.database_url, id, s.kafka_group_id);
    ces::log::event(spdlog::level::info, "main", "legacy_offsets_adopted",
                    {{"cluster_id", id},
                     {"adopted_group_offsets", static_cast<int64_t>(adopted)}});
  });
}

/// The current HTTP_BRIDGE, for the HTTP server's threads: the SUPERVISOR
/// replaces it when it restarts the bridge.
struct bridge_slot {
  std::mutex mtx;
  ces::http_bridge_actor hdl;

  void set(ces::http_bridge_actor x) {
    std::lock_guard<std::mutex> guard{mtx};
    hdl = std::move(x);
  }
  ces::http_bridge_actor get() {
    std::lock_guard<std::mutex> guard{mtx};
    return hdl;
  }
};

/// The graceful stop, on the signal thread after the first SIGTERM/SIGINT:
/// refuse new API requests, let the ones in flight (replays waiting for the
/// broker) get their true answer for up to min(replay timeout + 1 s, half the
/// shutdown timeout), stop the HTTP server, then ask the SUPERVISOR for its
/// ordered shutdown. The SUPERVISOR kills a child that outlives
/// shutdown-timeout-ms and reports an unclean stop (exit 1); the deadline
/// here (shutdown-timeout-ms + 3 s) is only the backstop for an actor stuck in
/// a blocking call, and a second signal (after the first second: Ctrl-C in a
/// terminal signals the whole process group, and a wrapper script may
/// forward the same stop request) ends the process at once: exit 1 both.
void graceful_stop(const ces::settings& s, const sigset_t& signals,
                   ces::api::http_server& http, std::atomic<bool>& draining,
                   const ces::supervisor_actor& sup,
                   const std::atomic<bool>& supervisor_down) {
  using clock = std::chrono::steady_clock;
  draining = true;
  auto drain_until
    = clock::now()
      + std::chrono::milliseconds(
        std::min(s.replay_timeout_ms + 1000, s.shutdown_timeout_ms / 2));
  while (http.in_flight() > 0 && clock::now() < drain_until)
    std::this_thread::sleep_for(20ms);
  http.stop();
  caf::anon_send(sup, ces::atom::shutdown_v);
  auto first = clock::now();
  auto deadline = first + std::chrono::milliseconds(s.shutdown_timeout_ms) + 3s;
  while (!supervisor_down && clock::now() < deadline)
    if (wait_signal(signals, 100ms) != 0 && clock::now() - first > 1s)
      break;
  if (!supervisor_down) {
    ces::log::event(spdlog::level::critical, "main", "shutdown_forced",
                    {{"timeout_ms",
                      static_cast<int64_t>(s.shutdown_timeout_ms)}});
    spdlog::shutdown();
    std::_Exit(1);
  }
}

/// `crm-events-sink keys ...` (argv[1] == "keys"): the API key subcommands
/// (api/keys_cli.hpp), with no actor system, no Kafka. --database-url and
/// --config-file go to the configuration (database-url only: DATABASE_URL,
/// the flag or the INI file), the other arguments to the subcommand.
int keys_main(int argc, char** argv) {
  std::vector<std::string> args;
  std::vector<std::string> settings_args{argv[0]};
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto is = [&](const std::string& flag) {
      return a == flag || a.rfind(flag + "=", 0) == 0;
    };
    if (is("--database-url") || is("--config-file")) {
      settings_args.push_back(a);
      if (a.find('=') == std::string::npos && i + 1 < argc)
        settings_args.emplace_back(argv[++i]);
    } else {
      args.push_back(std::move(a));
    }
  }
  std::string url;
  if (!ces::api::keys_cli_wants_help(args)) {
    std::vector<char*> cargs;
    for (auto& a : settings_args)
      cargs.push_back(a.data());
    ces::service_config cfg;
    cfg.database_only = true;
    auto loaded = cfg.load(static_cast<int>(cargs.size()), cargs.data(),
                           ::getenv, std::cout, std::cerr);
    if (!loaded.proceed)
      return loaded.exit_code;
    url = cfg.values.database_url;
  }
  return ces::api::run_keys_cli(args, url, std::cout, std::cerr);
}

} // namespace

int main(int argc, char** argv) {
  if (argc == 2 && std::string{argv[1]} == "--version") {
    std::cout << "crm-events-sink " << ces::version() << " (revision "
              << ces::revision() << ")\n";
    return 0;
  }
  if (argc > 1 && std::string{argv[1]} == "keys")
    return keys_main(argc, argv);
  // Records are allocated by the consumer's thread and freed by the
  // persisters': with glibc's default of one arena per thread that churn
  // keeps memory in several arenas. Two arenas measured 20 MiB less peak RSS
  // draining a 1 M backlog (bench/run.sh --backlog), no throughput cost.
  // MALLOC_ARENA_MAX in the environment still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr)
    mallopt(M_ARENA_MAX, 2);
  ces::service_config cfg;
  cfg.add_message_types<caf::id_block::ces>()
    .add_message_types<caf::id_block::ces_actors>()
    .add_error_category(caf::atom("ces"), ces::render_errc);
  auto loaded = cfg.load(argc, argv, ::getenv, std::cout, std::cerr);
  if (!loaded.proceed)
    return loaded.exit_code;
  auto s = cfg.values;
  ces::log::init(s.log_format, s.log_level);
  // A server does not die of writing to a closed pipe or socket (e.g. its
  // log reader went away): those writes fail with EPIPE instead.
  std::signal(SIGPIPE, SIG_IGN);
  ces::api::raise_fd_limit(); // before any thread opens descriptors
  // Signals are taken synchronously (sigtimedwait); block them in every
  // thread, including the ones CAF and librdkafka start.
  auto signals = shutdown_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  {
    std::string line;
    for (auto& [k, v] : ces::describe(s))
      line += (line.empty() ? "" : " ") + k + "=" + v;
    ces::log::event(spdlog::level::info, "main", "starting",
                    {{"version", ces::version()},
                     {"revision", ces::revision()},
                     {"settings", line},
                     {"tls", s.http_tls_cert_file.empty() ? "off" : "on"}});
  }
  // Local runs: host librdkafka's mock cluster in this process.
  std::unique_ptr<ces::embedded_broker> broker;
  if (s.kafka_bootstrap_servers == "embedded") {
    try {
      broker = std::make_unique<ces::embedded_broker>(
        s.kafka_topics, s.embedded_partitions);
    } catch (const std::exception& e) {
      ces::log::event(spdlog::level::critical, "main", "embedded_broker_failed",
                      {{"reason", e.what()}});
      return 1;
    }
    s.kafka_bootstrap_servers = broker->bootstraps();
    ces::log::event(spdlog::level::info, "main", "embedded_broker",
                    {{"bootstrap", s.kafka_bootstrap_servers},
                     {"partitions", static_cast<int64_t>(s.embedded_partitions)}});
    if (!s.embedded_bootstrap_file.empty())
      write_file_atomically(s.embedded_bootstrap_file,
                            s.kafka_bootstrap_servers);
  }
  ces::metrics stats;
  stats.set_build_info(ces::version(), ces::revision());
  stats.declare_topics(s.kafka_topics);
  auto slot = std::make_shared<bridge_slot>();
  std::vector<ces::child_spec> specs;
  try {
    // Reads the JWT secret and JWKS files: a bad one is a configuration
    // error.
    specs = ces::child_specs(
      s, &stats, [slot](ces::http_bridge_actor hdl) { slot->set(hdl); });
  } catch (const std::exception& e) {
    ces::log::event(spdlog::level::critical, "main", "auth_config_invalid",
                    {{"reason", e.what()}});
    return 2;
  }
  stats.declare_actors(ces::child_names(specs));
  ces::log::event(spdlog::level::info, "main", "dlq_alerts",
                  {{"enabled", !s.dlq_webhook_url.empty()},
                   {"url", ces::mask_url(s.dlq_webhook_url)},
                   {"threshold", static_cast<int64_t>(s.dlq_alert_threshold)},
                   {"growth", static_cast<int64_t>(s.dlq_alert_growth)},
                   {"window_s", static_cast<int64_t>(s.dlq_alert_window_s)},
                   {"cooldown_s",
                    static_cast<int64_t>(s.dlq_alert_cooldown_s)}});
  try {
    stats.expose(s.metrics_address, s.metrics_port);
  } catch (const std::exception& e) {
    ces::log::event(spdlog::level::critical, "main", "metrics_failed",
                    {{"reason", e.what()}});
    return 1;
  }
  // librdkafka's own checks of the extra properties, before anything starts
  // (a value it refuses is a configuration error: exit 2).
  try {
    ces::kafka_source_config kc;
    kc.bootstrap_servers = s.kafka_bootstrap_servers;
    kc.properties = s.kafka_properties;
    ces::check_kafka_properties(kc);
  } catch (const std::exception& e) {
    ces::log::event(spdlog::level::critical, "main", "kafka_config_invalid",
                    {{"reason", e.what()}});
    return 2;
  }
  // A login this librdkafka is known to fail against current brokers (which
  // call it "invalid credentials"): said once at start, not refused.
  if (auto why = ces::sasl_compatibility_problem(s.kafka_properties);
      !why.empty())
    ces::log::event(spdlog::level::warn, "main", "kafka_scram_unsupported",
                    {{"reason", why}});
  // The operator API's certificate and key, before anything starts (a file
  // that cannot serve is a configuration error: exit 2).
  if (!s.http_tls_cert_file.empty()) {
    try {
      ces::api::check_tls_files(s.http_tls_cert_file, s.http_tls_key_file);
    } catch (const std::exception& e) {
      ces::log::event(spdlog::level::critical, "main", "http_tls_invalid",
                      {{"reason", e.what()}});
      return 2;
    }
  }
  bool legacy_offsets = false;
  try {
    if (!migrate_with_retry(s, signals, legacy_offsets))
      return 0; // asked to stop before PostgreSQL came up
    // PostgreSQL answered: crm_db_up is 0 from the start until here, so a
    // database that is down at start-up shows (and alerts) too.
    stats.set_db_up(true);
  } catch (const ces::storage::encoding_error& e) {
    ces::log::event(spdlog::level::critical, "main", "db_encoding_unsupported",
                    {{"reason", e.what()}});
    return 1;
  } catch (const std::exception& e) {
    ces::log::event(spdlog::level::critical, "main", "migration_failed",
                    {{"reason", e.what()}});
    return 1;
  }
  try {
    if (legacy_offsets && !adopt_legacy_offsets(s, signals))
      return 0; // asked to stop before Kafka answered
  } catch (const std::exception& e) {
    ces::log::event(spdlog::level::critical, "main", "kafka_config_invalid",
                    {{"reason", e.what()}});
    return 2;
  }
  if (!s.admin_token_file.empty()) {
    // The first admin, the way Kubernetes mounts a secret.
    try {
      auto key = ces::read_key_file(s.admin_token_file, "ADMIN_TOKEN_FILE");
      ces::storage::auth_store store{s.database_url};
      ces::audit_entry e;
      e.who.principal = "admin-token-file";
      auto what = store.register_bootstrap(key, e);
      ces::log::event(what == "revoked" ? spdlog::level::warn
                                        : spdlog::level::info,
                      "main", "admin_key",
                      {{"name", "bootstrap"},
                       {"file", s.admin_token_file},
                       {"outcome", what}});
    } catch (const ces::storage::infra_error& e) {
      ces::log::event(spdlog::level::critical, "main", "admin_key_failed",
                      {{"reason", e.what()}});
      return 1;
    } catch (const std::exception& e) {
      ces::log::event(spdlog::level::critical, "main", "auth_config_invalid",
                      {{"reason", e.what()}});
      return 2;
    }
  }
  int exit_code = 0;
  // ~actor_system waits for every actor. One that outlived its SUPERVISOR
  // (none should) must not hang the process: the teardown gets
  // shutdown-timeout-ms, then the process ends with exit 1.
  std::mutex teardown_mtx;
  std::condition_variable teardown_cv;
  bool torn_down = false;
  std::thread teardown_guard;
  {
    caf::actor_system sys{cfg};
    ces::supervision_policy policy;
    policy.backoff_initial =
      std::chrono::milliseconds(s.restart_backoff_initial_ms);
    policy.backoff_max = std::chrono::milliseconds(s.restart_backoff_max_ms);
    policy.max_restarts = static_cast<size_t>(s.max_restarts);
    policy.window = std::chrono::seconds(s.restart_window_s);
    policy.stop_timeout = std::chrono::milliseconds(s.shutdown_timeout_ms);
    auto sup = sys.spawn(
      ces::supervisor, std::move(specs), policy,
      [&stats](const std::string& actor) { stats.add_actor_restart(actor); },
      [&stats](const std::string& actor) { stats.add_actor_crash(actor); });
    // The operator API: RESTinio routes and validates on its own threads and
    // hands each valid request to the HTTP_BRIDGE without waiting.
    std::unique_ptr<ces::api::http_server> http;
    std::atomic<bool> draining{false};
    try {
      ces::api::http_server_options ho;
      ho.address = s.http_address;
      ho.port = s.http_port;
      ho.max_in_flight = static_cast<size_t>(s.http_max_in_flight);
      ho.max_connections = static_cast<size_t>(s.http_max_connections);
      ho.routes.fault_injection = s.fault_injection == 1;
      ho.request_timeout = std::chrono::milliseconds(s.replay_timeout_ms + 10000);
      ho.tls_cert_file = s.http_tls_cert_file;
      ho.tls_key_file = s.http_tls_key_file;
      ho.observer = [&stats](ces::api::route_kind r, int status, double secs) {
        stats.observe_http_request(ces::api::to_string(r), status, secs);
      };
      http = std::make_unique<ces::api::http_server>(
        ho, [slot, &draining](std::shared_ptr<ces::api::pending_request> req,
                              ces::api::parsed_request r) {
          if (draining)
            req->respond(503, ces::api::error_json("shutting_down",
                                                   "the service is stopping"));
          else if (auto bridge = slot->get())
            caf::anon_send(bridge, std::move(req), r);
          else
            req->respond(503, ces::api::error_json("unavailable",
                                                   "the service is starting"));
        });
    } catch (const std::exception& e) {
      bool tls = dynamic_cast<const ces::api::tls_error*>(&e) != nullptr;
      ces::log::event(spdlog::level::critical, "main",
                      tls ? "http_tls_invalid" : "http_failed",
                      {{"reason", e.what()}});
      caf::anon_send_exit(sup, caf::exit_reason::kill);
      spdlog::shutdown();
      std::_Exit(tls ? 2 : 1);
    }
    ces::log::event(spdlog::level::info, "main", "started",
                    {{"http_port", static_cast<int64_t>(http->port())},
                     {"tls", http->tls() ? "on" : "off"},
                     {"metrics_port", static_cast<int64_t>(s.metrics_port)},
                     {"group", s.kafka_group_id}});
    std::atomic<bool> supervisor_down{false};
    std::thread signal_thread{[&] {
      while (!supervisor_down) {
        auto sig = wait_signal(signals, 200ms);
        if (sig == 0)
          continue;
        ces::log::event(spdlog::level::info, "main", "signal",
                        {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"},
                         {"action", "graceful shutdown"}});
        graceful_stop(s, signals, *http, draining, sup, supervisor_down);
        return;
      }
    }};
    caf::error reason;
    {
      caf::scoped_actor self{sys};
      self->monitor(sup);
      self->receive([&](caf::down_msg& dm) { reason = dm.reason; });
    }
    supervisor_down = true;
    signal_thread.join();
    http->stop();
    if (reason && reason != caf::exit_reason::normal
        && reason != caf::exit_reason::user_shutdown) {
      exit_code = reason == ces::errc::restart_budget_exhausted ? 3 : 1;
      ces::log::event(spdlog::level::critical, "main", "exiting",
                      {{"reason", sys.render(reason)},
                       {"exit_code", static_cast<int64_t>(exit_code)}});
    } else {
      ces::log::event(spdlog::level::info, "main", "exiting",
                      {{"exit_code", int64_t{0}}});
    }
    teardown_guard = std::thread{[&] {
      std::unique_lock<std::mutex> guard{teardown_mtx};
      if (teardown_cv.wait_for(guard,
                               std::chrono::milliseconds(s.shutdown_timeout_ms),
                               [&] { return torn_down; }))
        return;
      ces::log::event(spdlog::level::critical, "main", "shutdown_forced",
                      {{"timeout_ms",
                        static_cast<int64_t>(s.shutdown_timeout_ms)},
                       {"reason", "actors outlived the supervisor"}});
      spdlog::shutdown();
      std::_Exit(1);
    }};
  }
  {
    std::lock_guard<std::mutex> guard{teardown_mtx};
    torn_down = true;
  }
  teardown_cv.notify_all();
  teardown_guard.join();
  // Everything that holds data is closed by now: the consumer committed and
  // left its group, the persister's last transaction is committed, every
  // connection is closed. Skip the slow teardown of the metrics HTTP server
  // and of an embedded broker (about 2 s together).
  spdlog::shutdown();
  std::fflush(nullptr);
  std::_Exit(exit_code);
}
