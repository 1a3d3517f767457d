#include "actors/spawn.hpp"

#include "actors/admin.hpp"
#include "actors/auth.hpp"
#include "actors/consumer.hpp"
#include "actors/dlq.hpp"
#include "actors/dlq_alerts.hpp"
#include "actors/http_bridge.hpp"
#include "actors/jobs.hpp"

#include "actors/idempotency.hpp"
#include "actors/journal.hpp"
#include "actors/kafka_source.hpp"
#include "actors/maintenance.hpp"
#include "actors/persister.hpp"
#include "actors/replayer.hpp"
#include "config/settings.hpp"

#include <unistd.h>

namespace ces {

namespace {

using std::chrono::milliseconds;

template <class Handle>
caf::actor as_actor(Handle hdl) {
  return caf::actor_cast<caf::actor>(hdl);
}

/// persister-`i`, with its own PostgreSQL connection.
child_spec spawn_persister(const settings& s, metrics* m, int i) {
  persister_settings ps;
  ps.name = "persister-" + std::to_string(i);
  ps.retry_initial = milliseconds(s.db_retry_initial_ms);
  ps.retry_max = milliseconds(s.db_retry_max_ms);
  auto make_writer
    = journal_writer_factory(s.database_url, s.journal_keep_raw != 0,
                             s.journal_partition_interval);
  return child_spec{
    ps.name, {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(
        self->spawn<caf::detached>(persister, make_writer, ps, m));
    }};
}

/// DLQ, with a store and a republish producer of its own.
child_spec spawn_dlq(const settings& s, metrics* m) {
  auto url = s.database_url;
  storage::dlq_store_options so;
  so.keep_raw = s.journal_keep_raw != 0;
  so.partition_interval = s.journal_partition_interval;
  so.limits.max_payload_bytes = s.max_payload_bytes;
  so.limits.max_depth = s.max_json_depth;
  // A republish whose outcome is still unknown after its delivery wait
  // (plus margin) may be retried again.
  so.republish_stale = std::max(milliseconds{60000},
                                milliseconds{2 * (s.replay_timeout_ms + 5000)});
  dlq_settings ds;
  ds.policy.classes = s.dlq_auto_retry_classes;
  ds.policy.max_attempts = s.dlq_retry_max_attempts;
  ds.policy.initial = milliseconds(s.dlq_retry_initial_ms);
  ds.policy.max = milliseconds(s.dlq_retry_max_ms);
  ds.retry_batch = s.dlq_retry_batch;
  ds.retry_interval = milliseconds(s.dlq_retry_interval_ms);
  ds.producer.bootstrap_servers = s.kafka_bootstrap_servers;
  ds.producer.properties = s.kafka_properties;
  ds.producer.message_timeout_ms = s.replay_timeout_ms;
  ds.producer.client_id = "crm-events-sink-dlq";
  return child_spec{
    "dlq", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(
        dlq, dlq_reader_on_journal(url), dlq_writer_on_store(url, so), ds,
        m));
    }};
}

child_spec spawn_journal(const settings& s) {
  auto url = s.database_url;
  storage::journal_reader_options jo;
  jo.max_page_bytes = s.http_max_response_bytes;
  return child_spec{
    "journal", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(journal, url, jo));
    }};
}

child_spec spawn_replayer(const settings& s, metrics* m) {
  replayer_settings rs;
  rs.database_url = s.database_url;
  rs.producer.bootstrap_servers = s.kafka_bootstrap_servers;
  rs.producer.properties = s.kafka_properties;
  rs.producer.message_timeout_ms = s.replay_timeout_ms;
  rs.replay_rate_per_tenant = s.replay_rate_per_tenant;
  rs.replay_burst_per_tenant = s.replay_burst_per_tenant;
  return child_spec{
    "replayer", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(replayer, rs, m));
    }};
}

/// The CONSUMER holds the handles of `persisters` (in that order).
child_spec spawn_consumer(const settings& s, metrics* m,
                          std::vector<std::string> persisters) {
  consumer_settings cs;
  cs.batch_max_records = s.batch_max_records;
  cs.linger = milliseconds(s.batch_linger_ms);
  cs.max_in_flight = s.max_in_flight_batches;
  cs.limits.max_payload_bytes = s.max_payload_bytes;
  cs.limits.max_depth = s.max_json_depth;
  kafka_source_config kc;
  kc.bootstrap_servers = s.kafka_bootstrap_servers;
  kc.group_id = s.kafka_group_id;
  kc.topics = s.kafka_topics;
  kc.properties = s.kafka_properties;
  kc.session_timeout_ms = s.kafka_session_timeout_ms;
  kc.database_url = s.database_url;
  return child_spec{
    "consumer", persisters,
    [=](caf::local_actor* self, const peer_map& peers) {
      std::vector<persister_actor> p;
      for (auto& name : persisters)
        p.push_back(caf::actor_cast<persister_actor>(peers.at(name)));
      source_factory make_source = [kc] {
        return std::unique_ptr<record_source>(new kafka_source(kc));
      };
      return as_actor(
        self->spawn<caf::detached>(consumer, make_source, p, cs, m));
    }};
}

child_spec spawn_auth(const settings& s, metrics* m) {
  auth_settings as;
  as.enabled = s.api_auth != "off";
  as.key_cache = milliseconds(s.auth_key_cache_ms);
  as.failures_per_s = s.auth_failures_per_minute / 60.0;
  as.failures_burst = s.auth_failures_burst;
  auto backend = auth_backend_on_store(s.database_url);
  auto jwt = make_jwt_checker(s);
  return child_spec{
    "auth", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(
        self->spawn<caf::detached>(authenticator, as, backend, jwt, m));
    }};
}

child_spec spawn_admin(const settings& s) {
  auto url = s.database_url;
  return child_spec{
    "admin", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(admin, url));
    }};
}

/// JOBS, with a producer of its own. Its owner name is stable across a
/// restart of this instance (host and HTTP port), so that a job it was
/// running when it was killed is taken up again at once.
child_spec spawn_jobs(const settings& s, metrics* m) {
  jobs_settings js;
  js.database_url = s.database_url;
  js.producer.bootstrap_servers = s.kafka_bootstrap_servers;
  js.producer.properties = s.kafka_properties;
  js.producer.message_timeout_ms = s.replay_timeout_ms;
  js.producer.client_id = "crm-events-sink-jobs";
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0)
    host[0] = '\0';
  js.owner = std::string{host} + ":" + std::to_string(s.http_port);
  // Above what one batch may take (statement timeout 30 s + the delivery
  // wait), so that a live owner never loses its job to another instance.
  js.lease = std::max(milliseconds{60000},
                      milliseconds{30000 + 2 * (s.replay_timeout_ms + 5000)});
  js.batch_size = s.jobs_batch_size;
  js.rate_per_tenant = s.job_rate_per_tenant;
  js.default_max_events = static_cast<int64_t>(s.jobs_default_max_events);
  js.dlq.keep_raw = s.journal_keep_raw != 0;
  js.dlq.limits.max_payload_bytes = s.max_payload_bytes;
  js.dlq.limits.max_depth = s.max_json_depth;
  return child_spec{
    "jobs", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(jobs, js, m));
    }};
}

child_spec spawn_idempotency(const settings& s) {
  idempotency_settings is;
  is.database_url = s.database_url;
  is.ttl = std::chrono::hours(s.idempotency_ttl_h);
  // A claim whose outcome is unknown (a replay that timed out) stays pending
  // about twice the bridge's replay timeout: a quick retry gets 409 rather
  // than a second replay.
  is.pending_ttl = std::chrono::duration_cast<std::chrono::seconds>(
    2 * milliseconds(s.replay_timeout_ms + 5000));
  return child_spec{
    "idempotency", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(idempotency, is));
    }};
}

/// MAINTENANCE, with PostgreSQL connections of its own, made again at each
/// restart.
child_spec spawn_maintenance(const settings& s, metrics* m) {
  maintenance_settings ms;
  ms.partition_interval = s.journal_partition_interval;
  ms.partitions_ahead = s.journal_partitions_ahead;
  ms.journal_retention_days = s.journal_retention_days;
  ms.dlq_retention_days = s.dlq_retention_days;
  ms.audit_retention_days = s.audit_retention_days;
  ms.batch = s.retention_batch;
  ms.interval = std::chrono::seconds(s.maintenance_interval_s);
  auto url = s.database_url;
  return child_spec{
    "maintenance", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(
        maintenance, ms, maintenance_backend_on_store(url), m));
    }};
}

/// DLQ_ALERTS (only when dlq-webhook-url is set), with a PostgreSQL
/// connection of its own, made again at each restart.
child_spec spawn_dlq_alerts(const settings& s, metrics* m) {
  dlq_alerts_settings as;
  as.url = s.dlq_webhook_url;
  // Checked by the configuration (config/validate.cpp).
  api::webhook_secret_key(s.dlq_webhook_secret, as.key);
  as.threshold = s.dlq_alert_threshold;
  as.growth = s.dlq_alert_growth;
  as.window_s = s.dlq_alert_window_s;
  as.cooldown = std::chrono::seconds(s.dlq_alert_cooldown_s);
  as.interval = milliseconds(s.dlq_alert_interval_ms);
  as.timeout = milliseconds(s.webhook_timeout_ms);
  as.max_attempts = s.webhook_max_attempts;
  auto url = s.database_url;
  return child_spec{
    "dlq_alerts", {}, [=](caf::local_actor* self, const peer_map&) {
      return as_actor(self->spawn<caf::detached>(
        dlq_alerts, as, dlq_figures_on_store(url), curl_webhook_poster(), m));
    }};
}

child_spec spawn_http_bridge(const settings& s, bridge_listener on_bridge) {
  http_bridge_settings hs;
  // Above the broker's own timeout, so the replayer answers first.
  hs.replay_timeout = milliseconds(s.replay_timeout_ms + 5000);
  // A DLQ retry may republish (the broker's timeout) or wait behind the
  // DLQ actor's automatic retry tick.
  hs.dlq_action_timeout = milliseconds(s.replay_timeout_ms + 5000);
  hs.database_url = s.database_url; // for /ready's PG_PROBE
  hs.jobs_default_max_events = static_cast<int64_t>(s.jobs_default_max_events);
  return child_spec{
    "http_bridge",
    {"dlq", "journal", "replayer", "auth", "admin", "jobs", "idempotency"},
    [=](caf::local_actor* self, const peer_map& peers) {
      http_bridge_peers hp{caf::actor_cast<journal_actor>(peers.at("journal")),
                           caf::actor_cast<dlq_actor>(peers.at("dlq")),
                           caf::actor_cast<replayer_actor>(
                             peers.at("replayer")),
                           caf::actor_cast<supervisor_actor>(self)};
      hp.auth = caf::actor_cast<auth_actor>(peers.at("auth"));
      hp.admin = caf::actor_cast<admin_actor>(peers.at("admin"));
      hp.jobs = caf::actor_cast<jobs_actor>(peers.at("jobs"));

      hp.idempotency
        = caf::actor_cast<idempotency_actor>(peers.at("idempotency"));
      auto hdl = self->spawn(http_bridge, hp, hs);
      if (on_bridge)
        on_bridge(hdl);
      return as_actor(hdl);
    }};
}

} // namespace

std::vector<child_spec> child_specs(const settings& s, metrics* m,
                                    bridge_listener on_bridge) {
  std::vector<child_spec> specs;
  std::vector<std::string> persisters;
  for (int i = 0; i < s.persister_connections; ++i) {
    specs.push_back(spawn_persister(s, m, i));
    persisters.push_back(specs.back().name);
  }
  specs.push_back(spawn_dlq(s, m));
  specs.push_back(spawn_journal(s));
  specs.push_back(spawn_replayer(s, m));
  specs.push_back(spawn_consumer(s, m, std::move(persisters)));
  specs.push_back(spawn_auth(s, m));
  specs.push_back(spawn_admin(s));
  specs.push_back(spawn_jobs(s, m));

  specs.push_back(spawn_idempotency(s));
  specs.push_back(spawn_maintenance(s, m));
  if (!s.dlq_webhook_url.empty())
    specs.push_back(spawn_dlq_alerts(s, m));
  specs.push_back(spawn_http_bridge(s, std::move(on_bridge)));
  return specs;
}

std::vector<std::string> child_names(const std::vector<child_spec>& specs) {
  std::vector<std::string> result;
  for (auto& spec : specs)
    result.push_back(spec.name);
  return result;
}

} // namespace ces
