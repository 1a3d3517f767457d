// CAF type IDs for every message element the actors exchange, and the inspect
// overloads of the plain model types (storage/model.hpp stays CAF-free).
// Included only by actor code and actor tests: it pulls in CAF.
#pragma once

#include "actors/messages.hpp"
#include "api/auth.hpp"
#include "api/routes.hpp"
#include "storage/auth_store.hpp"
#include "storage/journal_reader.hpp"
#include "storage/model.hpp"

#include <caf/all.hpp>

#include <memory>

#include <cstdint>
#include <string>
#include <vector>

namespace ces {

// -- inspect (CAF 0.17 dialect: f(meta::type_name, fields...)) ---------------

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kafka_header& x) {
  return f(caf::meta::type_name("ces.kafka_header"), x.key, x.value,
           x.has_value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, kafka_record& x) {
  return f(caf::meta::type_name("ces.kafka_record"), x.topic, x.partition,
           x.offset, x.has_key, x.key, x.headers, x.timestamp_ms,
           x.timestamp_type, x.has_value, x.value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checked_record& x) {
  auto reason = static_cast<uint8_t>(x.reason);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.reason = static_cast<reject_reason>(reason);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.checked_record"), x.rec, reason, load,
           x.error, x.tenant_id, x.replay_of, x.replay_id, x.replay_job);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, partition_offset& x) {
  return f(caf::meta::type_name("ces.partition_offset"), x.topic, x.partition,
           x.next_offset);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, topic_count& x) {
  return f(caf::meta::type_name("ces.topic_count"), x.topic, x.reason,
           x.count);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, persist_outcome& x) {
  return f(caf::meta::type_name("ces.persist_outcome"), x.offsets,
           x.journalled, x.dead_lettered, x.skipped, x.isolation_rounds,
           x.replay_duplicates);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch& x) {
  return f(caf::meta::type_name("ces.batch"), x.seq, x.cluster_id,
           x.records);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_status& x) {
  return f(caf::meta::type_name("ces.child_status"), x.name, x.state,
           x.restarts, x.last_failure);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tenant_scope& x) {
  return f(caf::meta::type_name("ces.tenant_scope"), x.all, x.tenants,
           x.unknown_tenant);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, requester& x) {
  return f(caf::meta::type_name("ces.requester"), x.principal, x.role,
           x.scope, x.request_id, x.client_addr);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replay_result& x) {
  return f(caf::meta::type_name("ces.replay_result"), x.event_id, x.topic,
           x.partition, x.offset, x.replay_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_entry& x) {
  return f(caf::meta::type_name("ces.audit_entry"), x.who, x.action,
           x.target, x.parameters, x.outcome, x.status, x.counts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, auth_request& x) {
  return f(caf::meta::type_name("ces.auth_request"), x.authorization,
           x.client_addr, x.request_id, x.target);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, event_filter& x) {
  auto replays = static_cast<uint8_t>(x.replays);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.replays = static_cast<replays_mode>(replays);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.event_filter"), x.tenant_id, x.topic,
           x.has_key, x.key, x.from, x.to, replays, load, x.replay_of, x.ids);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_filter& x) {
  return f(caf::meta::type_name("ces.dlq_filter"), x.status, x.error_class,
           x.topic, x.tenant_id, x.from, x.to);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replay_request& x) {
  return f(caf::meta::type_name("ces.replay_request"), x.filter, x.transform,
           x.target_topic, x.rate_per_s, x.max_events, x.dry_run, x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replay_plan& x) {
  return f(caf::meta::type_name("ces.replay_plan"), x.matched, x.by_topic,
           x.by_tenant, x.first_received_at, x.last_received_at,
           x.sample_ids, x.samples);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_row& x) {
  return f(caf::meta::type_name("ces.job_row"), x.id, x.kind, x.status,
           x.request, x.matched, x.done, x.failed, x.requested_by,
           x.request_id, x.last_error, x.created_at, x.started_at,
           x.finished_at, x.cancel_requested);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_filter& x) {
  return f(caf::meta::type_name("ces.job_filter"), x.status, x.kind);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_retry_request& x) {
  return f(caf::meta::type_name("ces.dlq_retry_request"), x.id, x.mode,
           x.has_payload, x.payload, x.transform, x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_retry_result& x) {
  return f(caf::meta::type_name("ces.dlq_retry_result"), x.dlq_id, x.status,
           x.mode, x.event_id, x.tenant_id, x.topic, x.partition, x.offset,
           x.attempts);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_bulk_request& x) {
  return f(caf::meta::type_name("ces.dlq_bulk_request"), x.action, x.filter,
           x.ids, x.mode, x.transform, x.reason, x.max_events, x.dry_run,
           x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_plan& x) {
  return f(caf::meta::type_name("ces.dlq_plan"), x.matched, x.by_error_class,
           x.by_topic, x.by_tenant, x.sample_ids);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, idempotent_answer& x) {
  return f(caf::meta::type_name("ces.idempotent_answer"), x.state, x.status,
           x.body, x.headers, x.retry_after_s);
}

} // namespace ces

namespace ces::auth {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, principal& x) {
  auto granted = static_cast<uint8_t>(x.granted);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.granted = static_cast<role>(granted);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.auth.principal"), x.name, x.kind,
           granted, load, x.scope);
}

} // namespace ces::auth

namespace ces::api {

class pending_request;

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, parsed_request& x) {
  auto kind = static_cast<uint8_t>(x.kind);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.kind = static_cast<route_kind>(kind);
    return caf::none;
  });
  return f(caf::meta::type_name("ces.api.parsed_request"), kind, load, x.id,
           x.limit, x.head, x.name, x.params, x.body);
}

} // namespace ces::api

namespace ces::storage {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_event& x) {
  return f(caf::meta::type_name("ces.journal_event"), x.id, x.tenant_id,
           x.topic, x.partition, x.offset, x.has_key, x.key, x.headers,
           x.payload_json, x.kafka_timestamp_ms, x.received_at, x.replay_of,
           x.has_raw, x.payload_raw, x.dlq_id);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dlq_entry_row& x) {
  return f(caf::meta::type_name("ces.dlq_entry_row"), x.id, x.topic,
           x.has_partition, x.partition, x.has_offset, x.offset, x.has_key,
           x.key, x.headers, x.has_payload, x.payload, x.payload_size,
           x.payload_truncated, x.kafka_timestamp_ms, x.tenant_id,
           x.error_class, x.error, x.attempts, x.status, x.received_at,
           x.updated_at, x.next_attempt_at, x.last_attempt_at, x.resolution,
           x.resolved_event_id, x.discard_reason, x.resolved_by);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_key_row& x) {
  return f(caf::meta::type_name("ces.api_key_row"), x.id, x.name, x.role,
           x.all_tenants, x.tenants, x.created_at, x.created_by, x.expires_at,
           x.revoked_at, x.last_used_at);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, new_key& x) {
  return f(caf::meta::type_name("ces.new_key"), x.name, x.role,
           x.all_tenants, x.tenants, x.expires_in_s, x.created_by);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, created_key& x) {
  // The key itself travels only inside this process (never serialized).
  return f(caf::meta::type_name("ces.created_key"), x.row, x.key);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_filter& x) {
  return f(caf::meta::type_name("ces.audit_filter"), x.action, x.principal,
           x.from, x.to);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, audit_row& x) {
  return f(caf::meta::type_name("ces.audit_row"), x.id, x.at, x.request_id,
           x.principal, x.role, x.all_tenants, x.tenants, x.action, x.target,
           x.parameters, x.outcome, x.status, x.counts, x.client_addr);
}

} // namespace ces::storage

/// Requests waiting for an answer travel between actors of this process
/// only; they are never serialized.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::shared_ptr<ces::api::pending_request>)

CAF_BEGIN_TYPE_ID_BLOCK(ces, caf::first_custom_type_id)
  CAF_ADD_ATOM(ces, ces::atom, persist, "persist")
  CAF_ADD_ATOM(ces, ces::atom, poll, "poll")
  CAF_ADD_ATOM(ces, ces::atom, keepalive, "keepalive")
  CAF_ADD_ATOM(ces, ces::atom, retry, "retry")
  CAF_ADD_ATOM(ces, ces::atom, refresh, "refresh")
  CAF_ADD_ATOM(ces, ces::atom, respawn, "respawn")
  CAF_ADD_ATOM(ces, ces::atom, status, "status")
  CAF_ADD_ATOM(ces, ces::atom, shutdown, "shutdown")
  CAF_ADD_ATOM(ces, ces::atom, stop_next, "stop_next")
  CAF_ADD_ATOM(ces, ces::atom, force_stop, "force_stop")
  CAF_ADD_ATOM(ces, ces::atom, replay, "replay")
  CAF_ADD_ATOM(ces, ces::atom, latest, "latest")
  CAF_ADD_ATOM(ces, ces::atom, get, "get")
  CAF_ADD_ATOM(ces, ces::atom, ping, "ping")
  CAF_ADD_ATOM(ces, ces::atom, fail, "fail")
  /// First element of an actor's messages to itself (timers, loops): not
  /// part of its public protocol.
  CAF_ADD_ATOM(ces, ces::atom, internal, "internal")
  CAF_ADD_ATOM(ces, ces::atom, authenticate, "authentic")
  CAF_ADD_ATOM(ces, ces::atom, audit, "audit")
  CAF_ADD_ATOM(ces, ces::atom, flush, "flush")
  CAF_ADD_ATOM(ces, ces::atom, warn, "warn")
  CAF_ADD_ATOM(ces, ces::atom, list, "list")
  CAF_ADD_ATOM(ces, ces::atom, create, "create")
  CAF_ADD_ATOM(ces, ces::atom, revoke, "revoke")
  CAF_ADD_ATOM(ces, ces::atom, query, "query")
  CAF_ADD_ATOM(ces, ces::atom, find, "find")
  CAF_ADD_ATOM(ces, ces::atom, plan, "plan")
  CAF_ADD_ATOM(ces, ces::atom, cancel, "cancel")
  CAF_ADD_ATOM(ces, ces::atom, run, "run")
  CAF_ADD_ATOM(ces, ces::atom, claim, "claim")
  CAF_ADD_ATOM(ces, ces::atom, complete, "complete")
  CAF_ADD_ATOM(ces, ces::atom, release, "release")
  CAF_ADD_ATOM(ces, ces::atom, discard, "discard")
  CAF_ADD_ATOM(ces, ces::atom, purge, "purge")
  CAF_ADD_TYPE_ID(ces, (ces::batch))
  CAF_ADD_TYPE_ID(ces, (ces::persist_outcome))
  CAF_ADD_TYPE_ID(ces, (ces::child_status))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::child_status>))
  CAF_ADD_TYPE_ID(ces, (ces::replay_result))
  CAF_ADD_TYPE_ID(ces, (ces::api::parsed_request))
  CAF_ADD_TYPE_ID(ces, (std::shared_ptr<ces::api::pending_request>))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::journal_event>))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::dlq_entry_row>))
  CAF_ADD_TYPE_ID(ces, (ces::tenant_scope))
  CAF_ADD_TYPE_ID(ces, (ces::requester))
  CAF_ADD_TYPE_ID(ces, (ces::audit_entry))
  CAF_ADD_TYPE_ID(ces, (ces::auth_request))
  CAF_ADD_TYPE_ID(ces, (ces::auth::principal))
  CAF_ADD_TYPE_ID(ces, (ces::storage::new_key))
  CAF_ADD_TYPE_ID(ces, (ces::storage::created_key))
  CAF_ADD_TYPE_ID(ces, (ces::storage::audit_filter))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::api_key_row>))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::storage::audit_row>))
  CAF_ADD_TYPE_ID(ces, (ces::event_filter))
  CAF_ADD_TYPE_ID(ces, (ces::dlq_filter))
  CAF_ADD_TYPE_ID(ces, (ces::replay_request))
  CAF_ADD_TYPE_ID(ces, (ces::replay_plan))
  CAF_ADD_TYPE_ID(ces, (ces::job_row))
  CAF_ADD_TYPE_ID(ces, (std::vector<ces::job_row>))
  CAF_ADD_TYPE_ID(ces, (ces::job_filter))
  CAF_ADD_TYPE_ID(ces, (ces::idempotent_answer))
  CAF_ADD_TYPE_ID(ces, (ces::dlq_retry_request))
  CAF_ADD_TYPE_ID(ces, (ces::dlq_retry_result))
  CAF_ADD_TYPE_ID(ces, (ces::dlq_bulk_request))
  CAF_ADD_TYPE_ID(ces, (ces::dlq_plan))
CAF_END_TYPE_ID_BLOCK(ces)
