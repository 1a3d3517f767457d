#include "storage/dlq_row.hpp"

#include "storage/headers_json.hpp"
#include "storage/pg_util.hpp"

#include <stdexcept>

namespace ces::storage::detail {

// RFC 3339 in UTC with microseconds, produced by the server (as in
// journal_reader.cpp); NULL stays NULL.
#define CES_RFC3339(col)                                                       \
  "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"

std::string bytes_of(const pqxx::field& f) {
  pqxx::binarystring b{f};
  return b.str();
}

std::vector<kafka_header> headers_of(const pqxx::field& f) {
  if (f.is_null())
    return {};
  try {
    return headers_from_json(f.c_str());
  } catch (const std::invalid_argument&) {
    // Not written by journal_writer (edited by hand): show no headers rather
    // than failing the whole read.
    return {};
  }
}

std::string dlq_row_columns(const std::string& payload_limit) {
  return "id, topic, partition, \"offset\", key, headers::text,"
         " substring(payload FROM 1 FOR " + payload_limit
         + "), octet_length(payload),"
           " floor(extract(epoch FROM kafka_timestamp) * 1000)::bigint,"
           " tenant_id, error_class, error, attempts, status, "
         CES_RFC3339("received_at") ", " CES_RFC3339("updated_at") ", "
         CES_RFC3339("next_attempt_at") ", " CES_RFC3339("last_attempt_at")
         ", resolution, resolved_event_id, discard_reason, resolved_by";
}

#undef CES_RFC3339

dlq_entry_row to_dlq_row(const pqxx::row& r) {
  dlq_entry_row d;
  d.id = r[0].as<int64_t>();
  d.topic = r[1].as<std::string>();
  d.has_partition = !r[2].is_null();
  if (d.has_partition)
    d.partition = r[2].as<int32_t>();
  d.has_offset = !r[3].is_null();
  if (d.has_offset)
    d.offset = r[3].as<int64_t>();
  d.has_key = !r[4].is_null();
  if (d.has_key)
    d.key = bytes_of(r[4]);
  d.headers = headers_of(r[5]);
  d.has_payload = !r[6].is_null();
  if (d.has_payload) {
    d.payload = bytes_of(r[6]);
    d.payload_size = r[7].as<size_t>();
    d.payload_truncated = d.payload.size() < d.payload_size;
  }
  d.kafka_timestamp_ms = r[8].is_null() ? -1 : r[8].as<int64_t>();
  d.tenant_id = opt_text(r[9]);
  d.error_class = r[10].as<std::string>();
  d.error = r[11].as<std::string>();
  d.attempts = r[12].as<int32_t>();
  d.status = r[13].as<std::string>();
  d.received_at = r[14].as<std::string>();
  d.updated_at = r[15].as<std::string>();
  d.next_attempt_at = opt_text(r[16]);
  d.last_attempt_at = opt_text(r[17]);
  d.resolution = opt_text(r[18]);
  d.resolved_event_id = r[19].is_null() ? 0 : r[19].as<int64_t>();
  d.discard_reason = opt_text(r[20]);
  d.resolved_by = opt_text(r[21]);
  return d;
}

} // namespace ces::storage::detail
