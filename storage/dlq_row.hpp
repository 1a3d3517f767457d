// Internal to storage/: reading event_dlq rows into dlq_entry_row, shared by
// journal_reader (the API's reads) and dlq_store (its changes). Includes
// pqxx, so only storage/*.cpp include it.
#pragma once

#include "storage/journal_reader.hpp"

#include <pqxx/pqxx>

#include <string>
#include <vector>

namespace ces::storage::detail {

/// The bytes of a bytea field.
std::string bytes_of(const pqxx::field& f);

/// The headers of a headers jsonb field (storage/headers_json.hpp); none
/// for NULL or for JSON not in that form (edited by hand).
std::vector<kafka_header> headers_of(const pqxx::field& f);

/// The event_dlq columns to_dlq_row() reads, with the payload cut to
/// `payload_limit` bytes (an SQL expression: "$2", "2147483647").
std::string dlq_row_columns(const std::string& payload_limit);

/// One row selected with dlq_row_columns().
dlq_entry_row to_dlq_row(const pqxx::row& r);

} // namespace ces::storage::detail
