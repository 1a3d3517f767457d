// Kafka headers <-> the JSON array stored in event_journal.headers and
// event_dlq.headers, and the small text helpers that form needs. Pure
// functions, no I/O.
//
// Format: an array in Kafka order, one object per header:
//   {"key": "<name>", "value": "<text>"}  value is UTF-8 text without NUL
//   {"key": "<name>", "value_b64": "..."} any other bytes, base64 (RFC 4648)
//   {"key": "<name>", "value": null}      null value (has_value == false)
// A key that is not UTF-8 text without NUL is stored as "key_b64" instead.
#pragma once

#include "storage/model.hpp"
#include "storage/utf8.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace ces::storage {

/// (The one UTF-8 layer of the code base is storage/utf8.hpp.)
using ces::is_valid_utf8;

/// True when `s` can be stored as PostgreSQL text/jsonb string: valid UTF-8
/// without NUL.
bool is_pg_text(std::string_view s) noexcept;

/// `s` with every NUL and every invalid UTF-8 sequence replaced by U+FFFD, so
/// that PostgreSQL accepts it as text.
std::string to_pg_text(std::string_view s);

/// Appends standard base64 (with padding) of `bytes`.
void append_base64(std::string& out, std::string_view bytes);

/// Decodes standard base64 (padding optional, no whitespace). Returns false
/// on malformed input.
bool decode_base64(std::string_view text, std::string& out);

/// Appends `s` as a JSON string literal (quotes included). `s` must be UTF-8;
/// control characters are escaped.
void append_json_string(std::string& out, std::string_view s);

/// Layout of rendered JSON: `spaced` as jsonb prints it (`{"key": "k"}`, the
/// journal's columns), `compact` without spaces (the operator API).
enum class json_layout { spaced, compact };

/// Appends the JSON array form of `headers` (`[]` when empty). The one
/// headers renderer: journal and DLQ rows (spaced) and the API (compact).
void append_headers_json(std::string& out,
                         const std::vector<kafka_header>& headers,
                         json_layout layout = json_layout::spaced);

/// The JSON array form of `headers`.
std::string headers_to_json(const std::vector<kafka_header>& headers);

/// The inverse of headers_to_json. Accepts any JSON layout (as PostgreSQL's
/// jsonb prints it: spaces, any key order); ignores unknown members. Throws
/// std::invalid_argument when `json` is not such an array.
std::vector<kafka_header> headers_from_json(std::string_view json);

} // namespace ces::storage
