// Table idempotency_keys (sql/0005_bulk_replay.sql): the first answer of a
// POST per (principal, Idempotency-Key). Knows no CAF.
//
// A request with a key claims it first (claim()): the first claim of a
// (principal, key) wins ("new") and serves the request, then stores its
// answer (complete()) or gives the key back (release()) when nothing
// definite happened. A later claim with the same fingerprint (method, path,
// body hash) gets the stored answer ("done"), or "pending" while the first
// request runs; with another fingerprint "mismatch". A pending claim
// expires at its pending_until (its request died or its outcome stayed
// unknown): the next claim takes it over. Rows older than the ttl are
// ignored by claim() and deleted by purge().
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ces::storage {

/// What claim() found.
struct idempotency_claim {
  /// "new", "done", "pending" or "mismatch".
  std::string state;
  /// done: the stored answer.
  int32_t status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  /// pending: when to try again: the seconds until the first request's
  /// claim expires, 1..5.
  int64_t retry_after_s = 0;
};

struct idempotency_options {
  /// Answers are kept (and replayed) this long.
  std::chrono::hours ttl{24};
  /// A claim not completed or released this long after it was made expires.
  std::chrono::seconds pending_ttl{30};
  /// statement_timeout of the store's session (0: the server's default).
  int statement_timeout_ms = 5000;
};

/// idempotency_keys over one connection of its own. Connects lazily on first
/// use and again on the next call after a failure. Not thread-safe. Throws
/// infra_error (storage/journal.hpp) when PostgreSQL is unreachable or a
/// statement fails.
class idempotency_store {
public:
  /// Does not connect.
  explicit idempotency_store(std::string database_url,
                             idempotency_options opts = {});
  ~idempotency_store();
  idempotency_store(const idempotency_store&) = delete;
  idempotency_store& operator=(const idempotency_store&) = delete;

  /// Claims (principal, key) for a request with `fingerprint`. Safe against
  /// concurrent claims from other connections: exactly one gets "new".
  idempotency_claim claim(const std::string& principal,
                          const std::string& key,
                          const std::string& fingerprint);

  /// Stores the answer of a pending claim (state done). False when there is
  /// no pending claim (it expired and was taken over, or was released).
  bool complete(const std::string& principal, const std::string& key,
                int32_t status, const std::string& body,
                const std::vector<std::pair<std::string, std::string>>&
                  headers);

  /// Deletes a pending claim. False when there is none.
  bool release(const std::string& principal, const std::string& key);

  /// Deletes the rows older than the ttl; returns how many.
  int64_t purge();

  /// True while a connection is open.
  bool connected() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace ces::storage
