// storage::dlq_store against a throwaway PostgreSQL: retry into the journal
// (fixed bytes, stored bytes, still invalid, refused by a trigger, closed
// rows, scope), each change with its audit row; load.
#include "storage/dlq_store.hpp"
#include "tests/integration/storage_test_util.hpp"

#include <catch2/catch.hpp>

#include <thread>

using namespace ces;
using namespace ces::test;
using storage::dlq_outcome;
using storage::dlq_store;

namespace {

/// Inserts one event_dlq row and returns its id. `payload` is SQL (a bytea
/// expression or NULL), `tenant` SQL too (NULL: unknown).
int64_t seed_dlq(const std::string& url, const std::string& payload,
                 const std::string& tenant = "'acme'",
                 const std::string& error_class = "invalid_json",
                 const std::string& extra_cols = "",
                 const std::string& extra_vals = "") {
  return std::stoll(scalar(
    url,
    "INSERT INTO event_dlq (topic, partition, \"offset\", key, headers,"
    " payload, kafka_timestamp, tenant_id, error_class, error" + extra_cols
      + ") VALUES ('crm', 3, 42, '\\x6b6579'::bytea,"
        " '[{\"key\": \"h\", \"value\": \"v\"}]', " + payload
      + ", timestamptz '2024-05-01T12:00:00.250Z', " + tenant + ", '"
      + error_class + "', 'bad'" + extra_vals + ") RETURNING id"));
}

std::string id_s(int64_t id) {
  return std::to_string(id);
}

/// A column of DLQ row `id`.
std::string dlq_col(const std::string& url, int64_t id,
                    const std::string& col) {
  return scalar(url, "SELECT " + col + " FROM event_dlq WHERE id = "
                       + id_s(id));
}

long audit_rows(const std::string& url, const std::string& where) {
  return count(url, "SELECT count(*) FROM audit_log WHERE " + where);
}

requester admin() {
  requester r;
  r.principal = "ops";
  r.role = "admin";
  r.scope = every_tenant;
  r.request_id = "req-1";
  return r;
}

requester tenant_operator(std::vector<std::string> tenants) {
  requester r;
  r.principal = "acme-ops";
  r.role = "operator";
  r.scope.tenants = std::move(tenants);
  return r;
}

const std::string fixed = R"({"tenant_id": "acme", "n": 1})";

} // namespace

TEST_CASE("a poison row fixed with given bytes is journalled and resolved",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{not json', 'UTF8')");
  dlq_store s{url};

  auto out = s.retry_journal(id, fixed, admin());
  REQUIRE(out.outcome == dlq_outcome::ok);
  CHECK(std::string(to_string(out.outcome)) == "ok");
  CHECK(out.event_id > 0);
  CHECK(out.tenant_id == "acme");
  CHECK(out.topic == "crm");
  CHECK(out.attempts == 2);

  // The journal row: the DLQ row's coordinates, key, headers and timestamp,
  // the fixed bytes (jsonb and raw), and the DLQ row it came from.
  auto ev = "SELECT %s FROM event_journal WHERE id = " + id_s(out.event_id);
  auto col = [&](const std::string& c) {
    auto q = ev;
    q.replace(q.find("%s"), 2, c);
    return scalar(url, q);
  };
  CHECK(col("dlq_id") == id_s(id));
  CHECK(col("tenant_id") == "acme");
  CHECK(col("topic") == "crm");
  CHECK(col("partition") == "3");
  CHECK(col("\"offset\"") == "42");
  CHECK(col("encode(key, 'escape')") == "key");
  CHECK(col("headers::text") == R"([{"key": "h", "value": "v"}])");
  CHECK(col("payload::text") == R"({"n": 1, "tenant_id": "acme"})");
  CHECK(col("payload_raw") == fixed);
  CHECK(col("kafka_timestamp = timestamptz '2024-05-01T12:00:00.250Z'")
        == "t");
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 1);

  // The DLQ row: resolved into that journal row, by whom, when.
  CHECK(dlq_col(url, id, "status") == "resolved");
  CHECK(dlq_col(url, id, "resolution") == "journal");
  CHECK(dlq_col(url, id, "resolved_event_id") == id_s(out.event_id));
  CHECK(dlq_col(url, id, "resolved_by") == "ops");
  CHECK(dlq_col(url, id, "attempts") == "2");
  CHECK(dlq_col(url, id, "last_attempt_at IS NOT NULL") == "t");
  CHECK(dlq_col(url, id, "next_attempt_at IS NULL") == "t");
  CHECK(dlq_col(url, id, "updated_at > received_at") == "t");

  // Its audit row, committed with it.
  CHECK(audit_rows(url, "action = 'dlq.retry' AND outcome = 'ok'"
                        " AND target = 'dlq/" + id_s(id) + "'"
                        " AND principal = 'ops' AND request_id = 'req-1'"
                        " AND parameters->>'bytes' = 'given'"
                        " AND (parameters->>'event_id')::bigint = "
                        + id_s(out.event_id))
        == 1);

  // The reader sees the new columns.
  storage::journal_reader r{url};
  auto d = r.dlq_by_id(id, every_tenant);
  REQUIRE(d);
  CHECK(d->status == "resolved");
  CHECK(d->resolution == "journal");
  CHECK(d->resolved_event_id == out.event_id);
  CHECK(d->resolved_by == "ops");
  CHECK_FALSE(d->last_attempt_at.empty());
  CHECK(d->next_attempt_at.empty());
  CHECK(d->discard_reason.empty());
  auto e = r.event_by_id(out.event_id);
  REQUIRE(e);
  CHECK(e->dlq_id == id);
  CHECK(e->payload_raw == fixed);
  auto page = r.latest_page(10, every_tenant);
  REQUIRE(page.events.size() == 1);
  CHECK(page.events[0].dlq_id == id);
  CHECK_FALSE(page.truncated);
}

TEST_CASE("a row whose stored bytes pass now is journalled from them",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{\"tenant_id\": \"acme\"}', 'UTF8')",
                     "'acme'", "db_rejected");
  dlq_store s{url, storage::dlq_store_options{}};
  SECTION("with payload_raw") {
    auto out = s.retry_journal(id, std::nullopt, admin());
    REQUIRE(out.outcome == dlq_outcome::ok);
    CHECK(scalar(url, "SELECT payload_raw FROM event_journal")
          == R"({"tenant_id": "acme"})");
    CHECK(audit_rows(url, "parameters->>'bytes' = 'stored'") == 1);
  }
  SECTION("without payload_raw (journal-keep-raw off)") {
    storage::dlq_store_options o;
    o.keep_raw = false;
    dlq_store s2{url, o};
    auto out = s2.retry_journal(id, std::nullopt, admin());
    REQUIRE(out.outcome == dlq_outcome::ok);
    CHECK(scalar(url, "SELECT payload_raw IS NULL FROM event_journal") == "t");
  }
  CHECK(dlq_col(url, id, "status") == "resolved");
}

TEST_CASE("still-invalid bytes count an attempt and journal nothing",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "NULL");
  dlq_store s{url};

  auto out = s.retry_journal(id, std::string{"{\"tenant_id\": "}, admin());
  CHECK(out.outcome == dlq_outcome::still_invalid);
  CHECK(out.error_class == "invalid_json");
  CHECK_FALSE(out.error.empty());
  CHECK(out.attempts == 2);
  CHECK_FALSE(out.gave_up);
  CHECK(dlq_col(url, id, "status") == "pending");
  CHECK(dlq_col(url, id, "attempts") == "2");
  CHECK(dlq_col(url, id, "error_class") == "invalid_json");
  CHECK(dlq_col(url, id, "error") == out.error);
  CHECK(dlq_col(url, id, "last_attempt_at IS NOT NULL") == "t");
  CHECK(dlq_col(url, id, "resolved_by") == "ops");
  // Manual retries do not schedule automatic ones.
  CHECK(dlq_col(url, id, "next_attempt_at IS NULL") == "t");

  // The stored NULL value: empty_value. A payload without a tenant:
  // missing_tenant.
  out = s.retry_journal(id, std::nullopt, admin());
  CHECK(out.outcome == dlq_outcome::still_invalid);
  CHECK(out.error_class == "empty_value");
  CHECK(out.attempts == 3);
  out = s.retry_journal(id, std::string{R"({"n": 1})"}, admin());
  CHECK(out.error_class == "missing_tenant");
  CHECK(dlq_col(url, id, "attempts") == "4");

  // The size limit is ingestion's.
  storage::dlq_store_options o;
  o.limits.max_payload_bytes = 10;
  dlq_store small{url, o};
  out = small.retry_journal(id, fixed, admin());
  CHECK(out.error_class == "too_large");

  CHECK(count(url, "SELECT count(*) FROM event_journal") == 0);
  CHECK(audit_rows(url, "action = 'dlq.retry' AND outcome = 'failed'"
                        " AND target = 'dlq/" + id_s(id) + "'")
        == 4);
  CHECK(audit_rows(url, "(counts->>'attempts')::int = 2"
                        " AND parameters->>'error_class' = 'invalid_json'")
        == 1);
}

TEST_CASE("a row PostgreSQL refuses is db_rejected until it is accepted",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{\"tenant_id\": \"acme\"}', 'UTF8')",
                     "'acme'", "db_rejected");
  dlq_store s{url};

  SECTION("a trigger's RAISE") {
    exec(url, R"(
      CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'acme is refused today'; END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON event_journal
        FOR EACH ROW EXECUTE FUNCTION refuse();)");
    auto out = s.retry_journal(id, std::nullopt, admin());
    CHECK(out.outcome == dlq_outcome::still_invalid);
    CHECK(out.error_class == "db_rejected");
    CHECK_THAT(out.error, Catch::Contains("acme is refused today")
                            && Catch::Contains("P0001"));
    CHECK(s.connected()); // a refused row is not a connection problem
    exec(url, "DROP TRIGGER refuse ON event_journal");
  }
  SECTION("a check constraint") {
    exec(url, "ALTER TABLE event_journal ADD CONSTRAINT no_acme"
              " CHECK (tenant_id <> 'acme')");
    auto out = s.retry_journal(id, std::nullopt, admin());
    CHECK(out.outcome == dlq_outcome::still_invalid);
    CHECK(out.error_class == "db_rejected");
    CHECK_THAT(out.error, Catch::Contains("no_acme"));
    exec(url, "ALTER TABLE event_journal DROP CONSTRAINT no_acme");
  }
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 0);
  CHECK(dlq_col(url, id, "attempts") == "2");
  CHECK(dlq_col(url, id, "status") == "pending");
  CHECK(audit_rows(url, "outcome = 'failed'"
                        " AND parameters->>'error_class' = 'db_rejected'")
        == 1);

  auto out = s.retry_journal(id, std::nullopt, admin());
  CHECK(out.outcome == dlq_outcome::ok);
  CHECK(out.attempts == 3);
  CHECK(count(url, "SELECT count(*) FROM event_journal WHERE dlq_id = "
                     + id_s(id))
        == 1);
  CHECK(dlq_col(url, id, "status") == "resolved");
}

TEST_CASE("a lost connection is an infra error and changes nothing",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{\"tenant_id\": \"acme\"}', 'UTF8')");
  dlq_store s{url};
  exec(url, R"(
    CREATE FUNCTION kill_me() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_terminate_backend(pg_backend_pid());
          PERFORM pg_sleep(5); RETURN NEW; END $$;
    CREATE TRIGGER kill_me BEFORE INSERT ON event_journal
      FOR EACH ROW EXECUTE FUNCTION kill_me();)");
  CHECK_THROWS_AS(s.retry_journal(id, std::nullopt, admin()),
                  storage::infra_error);
  CHECK_FALSE(s.connected());
  CHECK(dlq_col(url, id, "attempts") == "1");
  CHECK(dlq_col(url, id, "status") == "pending");
  CHECK(audit_rows(url, "true") == 0);
  exec(url, "DROP TRIGGER kill_me ON event_journal");
  // Reconnects on the next call.
  CHECK(s.retry_journal(id, std::nullopt, admin()).outcome
        == dlq_outcome::ok);
}

TEST_CASE("closed rows are not retried", "[dlq]") {
  auto url = migrated_db();
  dlq_store s{url};

  SECTION("resolved: retried again, and the journal takes one row per DLQ "
          "row") {
    auto id = seed_dlq(url, "NULL");
    REQUIRE(s.retry_journal(id, fixed, admin()).outcome == dlq_outcome::ok);
    auto again = s.retry_journal(id, fixed, admin());
    CHECK(again.outcome == dlq_outcome::closed);
    CHECK(again.error_class == "resolved");
    CHECK(again.attempts == 2);
    CHECK(count(url, "SELECT count(*) FROM event_journal") == 1);
    CHECK(dlq_col(url, id, "attempts") == "2");
  }
  SECTION("retried by two stores at once: one journal row") {
    // Since migration 0008 the journal is partitioned and its dlq_id index
    // is no longer UNIQUE (a unique index of a partitioned table must hold
    // received_at). What remains is the retry's own guarantee: it locks the
    // DLQ row (FOR UPDATE) and journals only while the row is open, in one
    // transaction, so the second retry finds it resolved.
    auto id = seed_dlq(url, "NULL");
    dlq_store other{url};
    storage::dlq_retry_outcome a, b;
    std::thread ta{[&] { a = s.retry_journal(id, fixed, admin()); }};
    std::thread tb{[&] { b = other.retry_journal(id, fixed, admin()); }};
    ta.join();
    tb.join();
    CHECK(((a.outcome == dlq_outcome::ok && b.outcome == dlq_outcome::closed)
           || (a.outcome == dlq_outcome::closed
               && b.outcome == dlq_outcome::ok)));
    CHECK(count(url, "SELECT count(*) FROM event_journal WHERE dlq_id = "
                       + id_s(id))
          == 1);
  }
  SECTION("discarded") {
    auto id = seed_dlq(url, "NULL", "'acme'", "invalid_json",
                       ", status", ", 'discarded'");
    auto out = s.retry_journal(id, fixed, admin());
    CHECK(out.outcome == dlq_outcome::closed);
    CHECK(out.error_class == "discarded");
  }
  SECTION("being republished (retried recently)") {
    auto id = seed_dlq(url, "NULL", "'acme'", "invalid_json",
                       ", status", ", 'retried'");
    CHECK(s.retry_journal(id, fixed, admin()).outcome
          == dlq_outcome::closed);
  }
  SECTION("a republish whose outcome is unknown for too long is open to "
          "republish and discard, never to the journal") {
    // Its copy may be in Kafka: ingestion journals that one.
    auto id = seed_dlq(url, "NULL", "'acme'", "invalid_json",
                       ", status, updated_at",
                       ", 'retried', now() - interval '2 minutes'");
    auto out = s.retry_journal(id, fixed, admin());
    CHECK(out.outcome == dlq_outcome::closed);
    CHECK(out.error_class == "retried");
    dlq_outcome o;
    CHECK(s.begin_republish(id, admin(), o));
    CHECK(o == dlq_outcome::ok);
  }
  SECTION("failed (automatic retry gave up): an operator may retry") {
    auto id = seed_dlq(url, "NULL", "'acme'", "db_rejected",
                       ", status", ", 'failed'");
    CHECK(s.retry_journal(id, fixed, admin()).outcome == dlq_outcome::ok);
  }
  SECTION("no such row") {
    auto out = s.retry_journal(999999, fixed, admin());
    CHECK(out.outcome == dlq_outcome::not_found);
    CHECK(out.attempts == 0);
  }
  CHECK(audit_rows(url, "outcome <> 'ok'") == 0);
}

TEST_CASE("retry and load follow the requester's tenant scope", "[dlq]") {
  auto url = migrated_db();
  auto acme = seed_dlq(url, "NULL");
  auto globex = seed_dlq(url, "NULL", "'globex'");
  auto unknown = seed_dlq(url, "NULL", "NULL", "missing_tenant");
  dlq_store s{url};
  auto op = tenant_operator({"acme"});

  CHECK(s.retry_journal(globex, fixed, op).outcome
        == dlq_outcome::not_found);
  CHECK(s.retry_journal(unknown, fixed, op).outcome
        == dlq_outcome::not_found);
  CHECK_FALSE(s.load(globex, op.scope));
  CHECK_FALSE(s.load(unknown, op.scope));
  REQUIRE(s.load(acme, op.scope));
  CHECK(s.load(unknown, every_tenant));

  // The fixed bytes move the row to a tenant the scope does not see.
  auto out = s.retry_journal(acme, std::string{R"({"tenant_id": "globex"})"},
                             op);
  CHECK(out.outcome == dlq_outcome::out_of_scope);
  CHECK(out.tenant_id == "globex");
  CHECK(dlq_col(url, acme, "attempts") == "1");
  CHECK(dlq_col(url, acme, "updated_at = received_at") == "t");
  CHECK(count(url, "SELECT count(*) FROM event_journal") == 0);
  CHECK(audit_rows(url, "true") == 0);

  // An admin (unknown tenants too) fixes the row without a tenant.
  out = s.retry_journal(unknown, fixed, admin());
  CHECK(out.outcome == dlq_outcome::ok);
  CHECK(out.tenant_id == "acme");
  // The tenant operator fixes its own.
  CHECK(s.retry_journal(acme, fixed, op).outcome == dlq_outcome::ok);
  CHECK(audit_rows(url, "principal = 'acme-ops' AND tenants = '{acme}'")
        == 1);
}

TEST_CASE("load returns the whole payload", "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to(repeat('x', 200000), 'UTF8')");
  dlq_store s{url};
  auto d = s.load(id, every_tenant);
  REQUIRE(d);
  CHECK(d->payload.size() == 200000);
  CHECK(d->payload_size == 200000);
  CHECK_FALSE(d->payload_truncated);
  CHECK(d->topic == "crm");
  CHECK(d->partition == 3);
  CHECK(d->offset == 42);
  CHECK(d->key == "key");
  REQUIRE(d->headers.size() == 1);
  CHECK(d->headers[0].key == "h");
  CHECK(d->kafka_timestamp_ms == 1714564800250);
  CHECK(d->status == "pending");
  CHECK_FALSE(s.load(id + 1, every_tenant));
}

TEST_CASE("discard closes an open row with its reason", "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to(repeat('y', 100000), 'UTF8')");
  dlq_store s{url};
  dlq_outcome o{};

  auto row = s.discard(id, "test traffic", admin(), o);
  CHECK(o == dlq_outcome::ok);
  REQUIRE(row);
  CHECK(row->id == id);
  CHECK(row->status == "discarded");
  CHECK(row->discard_reason == "test traffic");
  CHECK(row->resolution == "discard");
  CHECK(row->resolved_by == "ops");
  // The row returned to the API is cut like the reader's.
  CHECK(row->payload.size() == 64 * 1024);
  CHECK(row->payload_truncated);
  CHECK(row->payload_size == 100000);
  CHECK(dlq_col(url, id, "status") == "discarded");
  CHECK(dlq_col(url, id, "attempts") == "1");
  CHECK(audit_rows(url, "action = 'dlq.discard' AND outcome = 'ok'"
                        " AND target = 'dlq/" + id_s(id) + "'"
                        " AND parameters->>'reason' = 'test traffic'")
        == 1);

  // Closed now: neither discarded again nor retried.
  CHECK_FALSE(s.discard(id, "again", admin(), o));
  CHECK(o == dlq_outcome::closed);
  CHECK(s.retry_journal(id, fixed, admin()).outcome == dlq_outcome::closed);
  CHECK(dlq_col(url, id, "discard_reason") == "test traffic");

  // Scope and missing rows.
  auto globex = seed_dlq(url, "NULL", "'globex'");
  CHECK_FALSE(s.discard(globex, "x", tenant_operator({"acme"}), o));
  CHECK(o == dlq_outcome::not_found);
  CHECK(dlq_col(url, globex, "status") == "pending");
  CHECK_FALSE(s.discard(999999, "x", admin(), o));
  CHECK(o == dlq_outcome::not_found);
  CHECK(audit_rows(url, "action = 'dlq.discard'") == 1);
}

TEST_CASE("discard_many discards the open rows in scope, one audit row",
          "[dlq]") {
  auto url = migrated_db();
  std::vector<int64_t> ids;
  for (int i = 0; i < 5; ++i)
    ids.push_back(seed_dlq(url, "NULL"));
  auto resolved = seed_dlq(url, "NULL", "'acme'", "invalid_json",
                           ", status", ", 'resolved'");
  auto failed = seed_dlq(url, "NULL", "'acme'", "db_rejected",
                         ", status", ", 'failed'");
  auto globex = seed_dlq(url, "NULL", "'globex'");
  auto other = seed_dlq(url, "NULL"); // not asked for
  dlq_store s{url};

  auto asked = ids;
  asked.insert(asked.end(), {resolved, failed, globex, 999999});
  auto n = s.discard_many(asked, "bad deploy", tenant_operator({"acme"}));
  CHECK(n == 6); // the five pending rows and the failed one
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE status ="
                   " 'discarded' AND discard_reason = 'bad deploy'"
                   " AND resolution = 'discard' AND resolved_by = 'acme-ops'")
        == 6);
  CHECK(dlq_col(url, resolved, "status") == "resolved");
  CHECK(dlq_col(url, globex, "status") == "pending");
  CHECK(dlq_col(url, other, "status") == "pending");
  CHECK(audit_rows(url, "action = 'dlq.discard'") == 1);
  CHECK(audit_rows(url, "action = 'dlq.discard' AND target = 'dlq'"
                        " AND (counts->>'discarded')::int = 6"
                        " AND (counts->>'requested')::int = 9"
                        " AND jsonb_array_length(parameters->'ids') = 6"
                        " AND parameters->'ids'->>0 = '" + id_s(ids[0]) + "'"
                        " AND parameters->>'ids_truncated' = 'false'")
        == 1);

  // Again: nothing left to discard, still audited.
  CHECK(s.discard_many(asked, "bad deploy", admin()) == 1); // globex
  CHECK(s.discard_many(asked, "bad deploy", admin()) == 0);
  CHECK(s.discard_many({}, "x", admin()) == 0);
  CHECK(audit_rows(url, "action = 'dlq.discard'") == 3);
}

TEST_CASE("discard_many audits at most 100 ids", "[dlq]") {
  auto url = migrated_db();
  exec(url, "INSERT INTO event_dlq (topic, tenant_id, error_class, error)"
            " SELECT 'crm', 'acme', 'invalid_json', 'x'"
            " FROM generate_series(1, 150)");
  std::vector<int64_t> ids;
  for (int64_t i = 1; i <= 150; ++i)
    ids.push_back(i);
  dlq_store s{url};
  CHECK(s.discard_many(ids, "cleanup", admin()) == 150);
  CHECK(audit_rows(url, "jsonb_array_length(parameters->'ids') = 100"
                        " AND parameters->>'ids_truncated' = 'true'"
                        " AND (counts->>'discarded')::int = 150")
        == 1);
}

TEST_CASE("republish: begin marks the row retried, finish resolves it or "
          "opens it again",
          "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to(repeat('z', 100000), 'UTF8')");
  dlq_store s{url};
  dlq_outcome o{};

  auto row = s.begin_republish(id, admin(), o);
  CHECK(o == dlq_outcome::ok);
  REQUIRE(row);
  CHECK(row->status == "retried");
  CHECK(row->attempts == 2);
  CHECK(row->payload.size() == 100000); // whole, to publish
  CHECK_FALSE(row->payload_truncated);
  CHECK(row->key == "key");
  CHECK(row->headers.size() == 1);
  CHECK_FALSE(row->last_attempt_at.empty());
  CHECK(audit_rows(url, "action = 'dlq.republish' AND outcome = 'ok'"
                        " AND parameters->>'step' = 'begin'")
        == 1);

  // While it is being republished it is closed to other actions.
  CHECK_FALSE(s.begin_republish(id, admin(), o));
  CHECK(o == dlq_outcome::closed);
  CHECK_FALSE(s.discard(id, "x", admin(), o));
  CHECK(o == dlq_outcome::closed);

  SECTION("delivered") {
    s.finish_republish(id, true, "", admin());
    CHECK(dlq_col(url, id, "status") == "resolved");
    CHECK(dlq_col(url, id, "resolution") == "republish");
    CHECK(dlq_col(url, id, "resolved_event_id IS NULL") == "t");
    CHECK(audit_rows(url, "action = 'dlq.republish' AND outcome = 'ok'"
                          " AND parameters->>'step' = 'finish'"
                          " AND (counts->>'updated')::int = 1")
          == 1);
    CHECK_FALSE(s.begin_republish(id, admin(), o));
    CHECK(o == dlq_outcome::closed);
  }
  SECTION("not delivered") {
    s.finish_republish(id, false, "Broker: Unknown topic or partition",
                       admin());
    CHECK(dlq_col(url, id, "status") == "pending");
    CHECK(dlq_col(url, id, "error") == "Broker: Unknown topic or partition");
    CHECK(dlq_col(url, id, "error_class") == "invalid_json");
    CHECK(dlq_col(url, id, "attempts") == "2");
    CHECK(audit_rows(url, "action = 'dlq.republish' AND outcome = 'failed'"
                          " AND parameters->>'step' = 'finish'")
          == 1);
    // Open again.
    CHECK(s.begin_republish(id, admin(), o));
    CHECK(o == dlq_outcome::ok);
    CHECK(dlq_col(url, id, "attempts") == "3");
  }
  SECTION("a late outcome does not undo what an operator did meanwhile") {
    exec(url, "UPDATE event_dlq SET status = 'discarded' WHERE id = "
                + id_s(id));
    s.finish_republish(id, true, "", admin());
    CHECK(dlq_col(url, id, "status") == "discarded");
    CHECK(audit_rows(url, "parameters->>'step' = 'finish'"
                          " AND (counts->>'updated')::int = 0")
          == 1);
  }
}

TEST_CASE("republish follows the scope", "[dlq]") {
  auto url = migrated_db();
  auto globex = seed_dlq(url, "NULL", "'globex'");
  dlq_store s{url};
  dlq_outcome o{};
  CHECK_FALSE(s.begin_republish(globex, tenant_operator({"acme"}), o));
  CHECK(o == dlq_outcome::not_found);
  CHECK_FALSE(s.begin_republish(12345, admin(), o));
  CHECK(o == dlq_outcome::not_found);
  CHECK(dlq_col(url, globex, "status") == "pending");
  CHECK(audit_rows(url, "true") == 0);
}

TEST_CASE("automatic retry: backoff, then failed at max_attempts", "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{\"tenant_id\": \"acme\"}', 'UTF8')",
                     "'acme'", "db_rejected");
  exec(url, R"(
    CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'not yet'; END $$;
    CREATE TRIGGER refuse BEFORE INSERT ON event_journal
      FOR EACH ROW EXECUTE FUNCTION refuse();)");
  dlq_store s{url};
  storage::dlq_retry_policy p;
  p.max_attempts = 4;
  p.initial = std::chrono::milliseconds{10000};
  p.max = std::chrono::milliseconds{25000};
  requester service; // the sweep's: no scope of its own
  service.principal = "auto-retry";

  // Delay in ms between last_attempt_at and next_attempt_at.
  auto delay = [&] {
    return std::stol(dlq_col(
      url, id,
      "(extract(epoch FROM next_attempt_at - last_attempt_at) * 1000)"
      "::bigint"));
  };

  // Attempt 2 (ingestion's was 1): next after initial * 2 = 20 s, jittered
  // to [10 s, 20 s].
  auto out = s.retry_journal(id, std::nullopt, service, &p);
  CHECK(out.outcome == dlq_outcome::still_invalid);
  CHECK(out.error_class == "db_rejected");
  CHECK(out.attempts == 2);
  CHECK_FALSE(out.gave_up);
  CHECK(dlq_col(url, id, "status") == "pending");
  CHECK(dlq_col(url, id, "resolved_by") == "auto-retry");
  auto d2 = delay();
  CHECK(d2 >= 10000);
  CHECK(d2 <= 20000);
  CHECK(audit_rows(url, "action = 'dlq.auto_retry' AND outcome = 'failed'")
        == 1);
  // Not due before next_attempt_at.
  CHECK(s.due_for_retry(p, 10).empty());

  // Attempt 3: initial * 4 = 40 s capped at 25 s, jittered to [12.5, 25].
  out = s.retry_journal(id, std::nullopt, service, &p);
  CHECK(out.attempts == 3);
  auto d3 = delay();
  CHECK(d3 >= 12500);
  CHECK(d3 <= 25000);

  // Attempt 4 = max_attempts: failed, nothing scheduled, not due any more.
  out = s.retry_journal(id, std::nullopt, service, &p);
  CHECK(out.attempts == 4);
  CHECK(out.gave_up);
  CHECK(dlq_col(url, id, "status") == "failed");
  CHECK(dlq_col(url, id, "next_attempt_at IS NULL") == "t");
  exec(url, "UPDATE event_dlq SET next_attempt_at = now() - interval '1 s'");
  CHECK(s.due_for_retry(p, 10).empty());
  CHECK(audit_rows(url, "action = 'dlq.auto_retry'") == 3);

  // An operator retries the failed row once the trigger is gone.
  exec(url, "DROP TRIGGER refuse ON event_journal");
  out = s.retry_journal(id, std::nullopt, admin());
  CHECK(out.outcome == dlq_outcome::ok);
  CHECK(dlq_col(url, id, "resolution") == "journal");
}

TEST_CASE("automatic retry resolves a row once it is accepted", "[dlq]") {
  auto url = migrated_db();
  auto id = seed_dlq(url, "convert_to('{\"tenant_id\": \"acme\"}', 'UTF8')",
                     "'acme'", "db_rejected");
  dlq_store s{url};
  storage::dlq_retry_policy p;
  requester service; // no principal: recorded as auto-retry
  auto out = s.retry_journal(id, std::nullopt, service, &p);
  CHECK(out.outcome == dlq_outcome::ok);
  CHECK(dlq_col(url, id, "status") == "resolved");
  CHECK(dlq_col(url, id, "resolution") == "auto");
  CHECK(dlq_col(url, id, "resolved_by") == "auto-retry");
  CHECK(dlq_col(url, id, "next_attempt_at IS NULL") == "t");
  CHECK(audit_rows(url, "action = 'dlq.auto_retry' AND outcome = 'ok'")
        == 1);
}

TEST_CASE("due_for_retry picks only due pending rows of the classes",
          "[dlq]") {
  auto url = migrated_db();
  storage::dlq_retry_policy p;
  p.classes = {"db_rejected", "too_large"};
  p.max_attempts = 3;
  p.initial = std::chrono::milliseconds{60000};

  auto seed = [&](const std::string& cls, const std::string& cols,
                  const std::string& vals) {
    return seed_dlq(url, "NULL", "'acme'", cls, cols, vals);
  };
  // Due: received long ago, nothing scheduled (received_at + initial).
  auto due1 = seed("db_rejected", ", received_at",
                   ", now() - interval '10 minutes'");
  // Due: scheduled in the past; another class of the policy.
  auto due2 = seed("too_large", ", next_attempt_at, attempts",
                   ", now() - interval '1 second', 2");
  // Not due: received just now (received_at + 60 s is ahead).
  seed("db_rejected", "", "");
  // Not due: scheduled ahead.
  seed("db_rejected", ", received_at, next_attempt_at",
       ", now() - interval '10 minutes', now() + interval '1 minute'");
  // Not a class of the policy.
  seed("invalid_json", ", received_at", ", now() - interval '10 minutes'");
  // Attempts used up (by manual retries): given up by the next sweep.
  auto used_up = seed("db_rejected", ", received_at, attempts",
                      ", now() - interval '10 minutes', 3");
  // Not pending.
  for (auto st : {"failed", "retried", "resolved", "discarded"})
    seed("db_rejected", ", received_at, status",
         ", now() - interval '10 minutes', '" + std::string(st) + "'");
  // No tenant: still retried (the service sees every row).
  auto due3 = seed_dlq(url, "NULL", "NULL", "db_rejected", ", received_at",
                       ", now() - interval '10 minutes'");

  dlq_store s{url};
  CHECK(s.due_for_retry(p, 10) == std::vector<int64_t>{due1, due2, due3});
  CHECK(scalar(url, "SELECT status FROM event_dlq WHERE id = "
                      + std::to_string(used_up))
        == "failed");
  CHECK(audit_rows(url, "action = 'dlq.auto_retry' AND outcome = 'failed'"
                        " AND (counts->>'gave_up')::int = 1")
        == 1);
  CHECK(s.due_for_retry(p, 2) == std::vector<int64_t>{due1, due2});
  CHECK(s.due_for_retry(p, 0).empty());
  auto none = p;
  none.classes.clear();
  CHECK(s.due_for_retry(none, 10).empty());

  // The sweep's query can use the partial index of open rows.
  exec(url, "ANALYZE event_dlq");
  auto plan = scalar(url,
    "SET enable_seqscan = off; EXPLAIN (FORMAT JSON) SELECT id FROM"
    " event_dlq WHERE status = 'pending' AND error_class ="
    " ANY('{db_rejected}'::text[]) AND attempts < 3 AND"
    " coalesce(next_attempt_at, received_at + 60000 * interval '1 ms')"
    " <= now() ORDER BY id LIMIT 10");
  CHECK_THAT(plan, Catch::Contains("event_dlq_open_idx"));
}

TEST_CASE("purge deletes closed rows older than before, in batches",
          "[dlq]") {
  auto url = migrated_db();
  // 7 resolved and 3 discarded rows last changed 2 days ago; 2 resolved
  // just now; 2 pending and 1 failed ones 2 days ago.
  exec(url, "INSERT INTO event_dlq (topic, tenant_id, error_class, error,"
            " status, updated_at)"
            " SELECT 'crm', 'acme', 'invalid_json', 'x',"
            " CASE WHEN i <= 7 THEN 'resolved' WHEN i <= 10 THEN 'discarded'"
            " WHEN i <= 12 THEN 'pending' ELSE 'failed' END,"
            " now() - interval '2 days' FROM generate_series(1, 13) AS i");
  exec(url, "INSERT INTO event_dlq (topic, tenant_id, error_class, error,"
            " status) SELECT 'crm', 'acme', 'invalid_json', 'x', 'resolved'"
            " FROM generate_series(1, 2)");
  dlq_store s{url};
  auto before = scalar(url, "SELECT to_char((now() - interval '1 day') AT"
                            " TIME ZONE 'UTC',"
                            " 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");

  CHECK(s.purge("resolved", before, admin(), 3) == 7); // batches 3, 3, 1
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE status ="
                   " 'resolved'") == 2);
  CHECK(s.purge("discarded", before, admin()) == 3);
  CHECK(s.purge("discarded", before, admin()) == 0);
  CHECK(count(url, "SELECT count(*) FROM event_dlq") == 5);
  CHECK(count(url, "SELECT count(*) FROM event_dlq WHERE status IN"
                   " ('pending', 'failed')") == 3);
  // One audit row per batch that deleted rows (committed with it), and one
  // for a purge that deleted nothing.
  CHECK(audit_rows(url, "action = 'dlq.purge' AND outcome = 'ok'") == 5);
  CHECK(audit_rows(url, "action = 'dlq.purge'"
                        " AND parameters->>'status' = 'resolved'"
                        " AND parameters->>'before' = '" + before + "'")
        == 3);
  CHECK(count(url, "SELECT sum((counts->>'deleted')::int) FROM audit_log"
                   " WHERE action = 'dlq.purge'"
                   " AND parameters->>'status' = 'resolved'")
        == 7);

  CHECK_THROWS_AS(s.purge("pending", before, admin()),
                  std::invalid_argument);
  CHECK_THROWS_AS(s.purge("failed", before, admin()), std::invalid_argument);
  CHECK_THROWS_AS(s.purge("resolved", "not a time", admin()),
                  std::invalid_argument);
  CHECK_THROWS_AS(s.purge("resolved", before, admin(), 0),
                  std::invalid_argument);
  CHECK(s.connected());
  CHECK(audit_rows(url, "action = 'dlq.purge'") == 5);
}
