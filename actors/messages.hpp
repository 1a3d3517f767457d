// The message types of the actors' protocols that are not storage model
// types (those live in storage/model.hpp). CAF-free: type_ids.hpp adds their
// inspect overloads and type IDs.
#pragma once

#include "storage/model.hpp"

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace ces {

/// What the REPLAYER did with one journalled event.
struct replay_result {
  int64_t event_id = 0;
  std::string topic;
  int32_t partition = -1;
  int64_t offset = -1;
  std::string replay_id;
};

/// One poll result handed from the CONSUMER to the PERSISTER.
struct batch {
  uint64_t seq = 0;
  /// The Kafka cluster the records come from: the key of the journal's
  /// offset fence (with topic and partition).
  std::string cluster_id;
  std::vector<checked_record> records;
};

/// What the AUTH actor needs of an operator request to say who sent it.
struct auth_request {
  /// The Authorization header (a secret: never logged).
  std::string authorization;
  std::string client_addr;
  std::string request_id;
  /// What was asked, for audit rows of refusals (e.g. "POST /replay/42").
  std::string target;
};

/// One supervised child as the SUPERVISOR sees it.
struct child_status {
  std::string name;
  std::string state; // "running", "restarting", "stopped"
  uint32_t restarts = 0;
  std::string last_failure;
};

/// The IDEMPOTENCY actor's answer to a claim of (principal, Idempotency-Key).
struct idempotent_answer {
  /// "new": nobody used the key; the claim is the caller's (serve the
  /// request, then complete or release it). "done": answer with status,
  /// body and headers (the first answer). "pending": the first request with
  /// this key still runs (409; retry after retry_after_s). "mismatch": the
  /// key was used for a different request (422).
  std::string state;
  int32_t status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  int64_t retry_after_s = 0;
};

} // namespace ces
