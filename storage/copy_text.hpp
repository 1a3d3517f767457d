// Encoders for PostgreSQL's COPY text format (tab-separated fields, `\N` for
// NULL, backslash escapes) and the rows journal_writer sends. Pure functions
// appending to one buffer, so a whole batch is encoded without per-row
// allocations.
#pragma once

#include "storage/model.hpp"

#include <cstdint>
#include <string>
#include <string_view>

namespace ces::storage::copy_text {

/// The NULL marker.
inline void append_null(std::string& out) {
  out += "\\N";
}

/// Appends `s` as one field: backslash, newline, carriage return and tab are
/// escaped; every other byte is copied as is (PostgreSQL then checks the
/// encoding).
void append_escaped(std::string& out, std::string_view s);

/// Appends a bytea field in hex form (`\\x0a1b...`).
void append_bytea(std::string& out, std::string_view bytes);

/// Appends a decimal integer.
void append_int(std::string& out, int64_t v);

/// Appends a UTC timestamp field for `ms` milliseconds since the epoch, e.g.
/// `2024-03-01 12:00:00.250+00`. Times outside 1970..9999 (including -1, "no
/// timestamp") are written as NULL.
void append_timestamp_ms(std::string& out, int64_t ms);

/// Columns of the event_journal rows append_journal_row writes with
/// `keep_raw` (payload_raw: the value exactly as received).
inline constexpr const char* journal_columns =
  "tenant_id,topic,partition,\"offset\",key,headers,payload,kafka_timestamp,"
  "replay_of,replay_job,payload_raw";

/// The same without payload_raw (`keep_raw` false: the bench's switch).
inline constexpr const char* journal_columns_no_raw =
  "tenant_id,topic,partition,\"offset\",key,headers,payload,kafka_timestamp,"
  "replay_of,replay_job";

/// Appends one event_journal line (with its newline) for an accepted record,
/// with `replay_of` and `replay_job` (0: NULL) as the verified provenance
/// (r.replay_of and r.replay_job are only the record's claims), and, when
/// `keep_raw`, the value again as payload_raw (escaped once, copied).
/// `scratch` is a reusable buffer.
void append_journal_row(std::string& out, const checked_record& r,
                        int64_t replay_of, int64_t replay_job, bool keep_raw,
                        std::string& scratch);

/// Columns of the event_dlq rows append_dlq_row writes.
inline constexpr const char* dlq_columns =
  "topic,partition,\"offset\",key,headers,payload,kafka_timestamp,tenant_id,"
  "error_class,error";

/// Appends one event_dlq line (with its newline) for a rejected record, with
/// `reason` and `error`. Text fields are made acceptable to PostgreSQL (invalid
/// UTF-8 and NUL replaced), so the line cannot be refused.
void append_dlq_row(std::string& out, const checked_record& r,
                    reject_reason reason, std::string_view error,
                    std::string& scratch);

} // namespace ces::storage::copy_text
