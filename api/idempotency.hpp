// Idempotency-Key on POST routes: the pure parts (no CAF, no I/O). The
// HTTP_BRIDGE claims (principal, key) with the request's fingerprint at the
// IDEMPOTENCY actor before it serves the request, and settles the claim by
// the answer that went out (settle()).
#pragma once

#include "api/routes.hpp"

#include <string>
#include <string_view>

namespace ces::api {

/// The routes that honour an Idempotency-Key: POST /replay/{id} and POST
/// /replays (not POST /keys: its answer holds the new key, which is never
/// stored). Other routes ignore the header.
bool takes_idempotency_key(route_kind k) noexcept;

/// An Idempotency-Key header value the server accepts: 1 to 255 printable
/// ASCII characters (0x20..0x7e), not starting or ending with a space.
bool valid_idempotency_key(std::string_view key) noexcept;

/// The request's path as the router matched it, parameters filled in
/// ("/replay/42", "/replays", "/jobs/7/cancel").
std::string request_path(const parsed_request& r);

/// What a claim is bound to: "POST /replay/42 " + the lowercase hex SHA-256
/// of the body. The same key with another fingerprint is refused.
std::string request_fingerprint(std::string_view method,
                                 const parsed_request& r);

/// The lowercase hex SHA-256 of `text`.
std::string sha256_hex(std::string_view text);

/// What becomes of a claim once its request was answered.
enum class idempotency_settlement {
  complete, // store the answer: a retry gets it again
  release,  // nothing definite happened: a retry runs the request again
  keep,     // the outcome is unknown: the claim stays pending until it
            // expires (a retry meanwhile gets 409)
};

/// complete for final answers (2xx, 4xx but 408, 409 and 429); keep for
/// answers that leave the outcome unknown (503 upstream_timeout, 503
/// dropped, 504); release for the others (408, 409, 429, other 5xx).
/// `body` is the answer's JSON (error answers carry their code there).
idempotency_settlement settle(int status, std::string_view body) noexcept;

} // namespace ces::api
