// Fakes for actor-protocol tests.
#pragma once

#include "actors/interfaces.hpp"
#include "actors/record_source.hpp"

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ces::test {

/// Observable state of a scripted_source, shared with the test body.
struct source_log {
  size_t taken = 0;              // records handed to the consumer
  size_t next_while_paused = 0;  // next() calls while paused (must stay 0)
  bool paused = false;
  size_t pauses = 0;
  size_t resumes = 0;
  std::vector<std::vector<partition_offset>> commits;
  bool closed = false;
  std::vector<partition_offset> final_offsets;
  /// What positions() reports (the test sets watermarks and starts).
  std::vector<partition_position> positions;
  /// What take_gaps() reports next (then nothing until the test adds more).
  std::vector<offset_gap> gaps;
  size_t gap_calls = 0; // take_gaps() calls
};

/// Hands out `available` valid CRM events on one topic, 4 partitions.
class scripted_source : public record_source {
public:
  scripted_source(std::shared_ptr<source_log> log, size_t available)
    : log_(std::move(log)), available_(available) {
  }

  bool next(kafka_record& out, std::chrono::milliseconds) override {
    if (log_->paused) {
      ++log_->next_while_paused;
      return false;
    }
    if (log_->taken >= available_)
      return false;
    auto i = log_->taken++;
    out = kafka_record{};
    out.topic = "apexflow.leads.created";
    out.partition = static_cast<int32_t>(i % 4);
    out.offset = static_cast<int64_t>(i / 4);
    out.has_value = true;
    out.value = R"({"tenant_id":"tenant-01","event_type":"lead.created","n":)"
                + std::to_string(i) + "}";
    return true;
  }
  void pause_all() override {
    log_->paused = true;
    ++log_->pauses;
  }
  void resume_all() override {
    log_->paused = false;
    ++log_->resumes;
  }
  void serve() override {
  }
  void commit(const std::vector<partition_offset>& offsets) override {
    log_->commits.push_back(offsets);
  }
  void close(const std::vector<partition_offset>& final_offsets) override {
    log_->closed = true;
    log_->final_offsets = final_offsets;
  }
  std::string cluster_id() const override {
    return "fake-cluster";
  }
  std::vector<partition_position> positions() override {
    return log_->positions;
  }
  std::vector<offset_gap> take_gaps() override {
    ++log_->gap_calls;
    return std::exchange(log_->gaps, {});
  }

private:
  std::shared_ptr<source_log> log_;
  size_t available_;
};

/// The outcome a real persister would report for `b` (all journalled).
inline persist_outcome all_journalled(const batch& b);

/// A PERSISTER that keeps every batch and answers only when told to: each
/// `retry` message answers the oldest unanswered batch as fully journalled
/// (promises must be delivered from inside the actor).
struct held_persister_state {
  std::vector<batch> received;
  std::deque<caf::typed_response_promise<persist_outcome>> unanswered;
  static inline const char* name = "held_persister";
};

inline persister_actor::behavior_type
held_persister(persister_actor::stateful_pointer<held_persister_state> self) {
  return {
    [=](atom::persist, batch& b) -> caf::result<persist_outcome> {
      auto rp = self->make_response_promise<persist_outcome>();
      self->state.received.push_back(std::move(b));
      self->state.unanswered.push_back(rp);
      return rp;
    },
    [=](atom::internal, atom::retry) {
      auto& st = self->state;
      if (st.unanswered.empty())
        return;
      auto idx = st.received.size() - st.unanswered.size();
      st.unanswered.front().deliver(all_journalled(st.received[idx]));
      st.unanswered.pop_front();
    },
  };
}

inline persist_outcome all_journalled(const batch& b) {
  persist_outcome out;
  std::map<std::pair<std::string, int32_t>, int64_t> next;
  for (auto& r : b.records) {
    auto& n = next[{r.rec.topic, r.rec.partition}];
    n = std::max(n, r.rec.offset + 1);
  }
  for (auto& [tp, n] : next)
    out.offsets.push_back(partition_offset{tp.first, tp.second, n});
  out.journalled.push_back(
    topic_count{"apexflow.leads.created", "", b.records.size()});
  return out;
}

} // namespace ces::test
