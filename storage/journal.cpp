// journal_writer: one transaction per batch holding the journal rows (COPY),
// the DLQ rows and the journal's offsets, fenced by those offsets.
#include "storage/journal.hpp"

#include "storage/copy_text.hpp"
#include "storage/pg_util.hpp"

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

namespace ces::storage::detail {

/// Lines of COPY text data, sent as they are (without per-field escaping).
struct copy_lines {
  const std::string* text; // one or more lines, without the final newline
};

} // namespace ces::storage::detail

namespace pqxx {

// libpqxx 6.4 keeps stream_to::write_raw_line private. This explicit
// specialization of the public `operator<<` template is a member of
// stream_to and may call it: it sends pre-encoded lines with one
// PQputCopyData call (libpqxx appends the final newline).
template <>
stream_to& stream_to::operator<< <ces::storage::detail::copy_lines>(
  const ces::storage::detail::copy_lines& lines) {
  write_raw_line(*lines.text);
  return *this;
}

} // namespace pqxx

namespace ces::storage {

namespace {

/// Largest piece of COPY data sent in one call (whole rows; a single larger
/// row goes alone).
constexpr size_t max_copy_chunk = 256 * 1024;

/// Keep at most this much buffer capacity between batches.
constexpr size_t max_kept_capacity = 64 * 1024 * 1024;

using partition_key = std::pair<std::string, int32_t>;

/// Orders partition keys; also compares with (string_view, partition)
/// without building a key.
struct key_less {
  using is_transparent = void;
  using ref = std::pair<std::string_view, int32_t>;
  static ref as_ref(const partition_key& k) {
    return {k.first, k.second};
  }
  static ref as_ref(const ref& k) {
    return k;
  }
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return as_ref(a) < as_ref(b);
  }
};

struct partition_state {
  int64_t fence = 0;      // next offset still to accept in this batch
  int64_t end = 0;        // last offset of the batch + 1
  uint64_t journalled = 0;
  uint64_t skipped = 0;
  uint64_t duplicates = 0; // resends of a job's replay already journalled
};

using partition_map = std::map<partition_key, partition_state, key_less>;

struct dlq_item {
  size_t index;         // into the batch
  reject_reason reason;
  std::string db_error; // for db_rejected
};

/// Per-topic sums of a per-partition counter (zeros left out).
std::vector<topic_count> per_topic(const partition_map& parts,
                                   uint64_t partition_state::*counter) {
  std::vector<topic_count> out;
  for (auto& [k, st] : parts) {
    if (st.*counter == 0)
      continue;
    if (out.empty() || out.back().topic != k.first)
      out.push_back(topic_count{k.first, "", 0});
    out.back().count += st.*counter;
  }
  return out;
}

/// Finds the state of `r`'s partition, starting with the previous record's.
partition_state& state_of(partition_map& parts, const kafka_record& r,
                          partition_map::iterator& last) {
  if (last == parts.end() || last->first.second != r.partition
      || last->first.first != r.topic)
    last = parts.find(key_less::ref{r.topic, r.partition});
  return last->second;
}

} // namespace

struct journal_writer::impl {
  std::string url;
  std::string cluster; // Kafka cluster id: the fence's key with the partition
  std::unique_ptr<detail::pg_session> db;

  // Reused between batches.
  std::string rows;              // COPY text of the accepted records
  std::vector<size_t> row_start; // offset of each row in `rows`, + end
  std::vector<size_t> row_index; // batch index of each row
  std::vector<partition_state*> row_part; // partition of each row
  std::string chunk;
  std::string scratch;
  std::string dlq_rows;
  /// Whether rows carry payload_raw (setting journal-keep-raw).
  bool keep_raw = true;
  /// Creates the partition of now() when it is missing (sql/0008).
  std::string ensure_sql;
  struct replay_row {
    int64_t event = 0;
    int64_t job = 0; // 0: a single replay
  };
  std::vector<std::string> replay_ids;                 // claimed in the batch
  std::unordered_map<std::string, replay_row> recorded; // replay id -> row
  std::set<std::pair<int64_t, int64_t>> job_events;    // (job, event) held

  persist_outcome write(const std::vector<checked_record>& batch);

  /// Sends rows [lo, hi) of `rows` as COPY data on `s`.
  void send_rows(pqxx::stream_to& s, size_t lo, size_t hi);

  /// COPYs rows [lo, hi) into event_journal inside a savepoint. Returns
  /// nullptr on success, the data error otherwise (savepoint rolled back).
  /// Other errors propagate.
  std::unique_ptr<pqxx::sql_error> try_copy(pqxx::dbtransaction& tx,
                                            size_t lo, size_t hi);

  /// Journals all rows, isolating the ones PostgreSQL refuses (appended to
  /// `rejected` as db_rejected). Returns the extra COPY attempts.
  uint32_t copy_journal(pqxx::dbtransaction& tx, std::vector<dlq_item>& rejected);
};

void journal_writer::impl::send_rows(pqxx::stream_to& s, size_t lo,
                                     size_t hi) {
  while (lo < hi) {
    auto end = lo + 1;
    while (end < hi && row_start[end + 1] - row_start[lo] <= max_copy_chunk)
      ++end;
    // Without the last newline: libpqxx appends one.
    chunk.assign(rows, row_start[lo], row_start[end] - row_start[lo] - 1);
    s << detail::copy_lines{&chunk};
    lo = end;
  }
}

std::unique_ptr<pqxx::sql_error>
journal_writer::impl::try_copy(pqxx::dbtransaction& tx, size_t lo,
                               size_t hi) {
  pqxx::subtransaction sp{tx, "ces_copy"};
  try {
    pqxx::stream_to s{sp, "event_journal",
                      std::vector<std::string>{
                        keep_raw ? copy_text::journal_columns
                                 : copy_text::journal_columns_no_raw}};
    send_rows(s, lo, hi);
    s.complete();
  } catch (const pqxx::sql_error& e) {
    if (!detail::is_data_error(e))
      throw;
    auto err = std::make_unique<pqxx::sql_error>(e);
    sp.abort(); // ROLLBACK TO SAVEPOINT
    return err;
  }
  sp.commit(); // RELEASE SAVEPOINT
  return nullptr;
}

uint32_t journal_writer::impl::copy_journal(pqxx::dbtransaction& tx,
                                            std::vector<dlq_item>& rejected) {
  auto n = row_index.size();
  if (n == 0)
    return 0;
  struct range {
    size_t lo, hi;
  };
  std::vector<range> todo{{0, n}}; // LIFO; keeps the rows in order
  uint32_t rounds = 0;
  bool first = true;
  std::vector<size_t> bad; // row numbers, with their messages below
  std::vector<std::string> bad_msg;
  while (!todo.empty()) {
    auto r = todo.back();
    todo.pop_back();
    if (!first)
      ++rounds;
    first = false;
    auto err = try_copy(tx, r.lo, r.hi);
    if (!err)
      continue;
    if (r.hi - r.lo == 1) {
      bad.push_back(r.lo);
      bad_msg.push_back(detail::describe(*err));
      continue;
    }
    // PostgreSQL names the line it refused: split around it (each part is
    // still verified by its own COPY, so a wrong guess costs only rounds).
    // Without a line number, split in halves.
    auto line = detail::copy_error_line(*err, "event_journal");
    if (line >= 1 && line <= r.hi - r.lo) {
      auto k = r.lo + line - 1;
      if (k + 1 < r.hi)
        todo.push_back({k + 1, r.hi});
      todo.push_back({k, k + 1});
      if (r.lo < k)
        todo.push_back({r.lo, k});
    } else {
      auto mid = r.lo + (r.hi - r.lo) / 2;
      todo.push_back({mid, r.hi});
      todo.push_back({r.lo, mid});
    }
  }
  for (size_t i = 0; i < bad.size(); ++i)
    rejected.push_back(
      dlq_item{row_index[bad[i]], reject_reason::db_rejected, std::move(bad_msg[i])});
  return rounds;
}

persist_outcome
journal_writer::impl::write(const std::vector<checked_record>& batch) {
  persist_outcome out;
  auto& conn = *db->conn;

  // The partitions of the batch, sorted: rows are locked in this order.
  partition_map parts;
  {
    auto last = parts.end();
    for (auto& r : batch) {
      if (last == parts.end() || last->first.second != r.rec.partition
          || last->first.first != r.rec.topic) {
        last = parts.find(key_less::ref{r.rec.topic, r.rec.partition});
        if (last == parts.end())
          last = parts.emplace(partition_key{r.rec.topic, r.rec.partition},
                               partition_state{})
                   .first;
      }
      last->second.end = std::max(last->second.end, r.rec.offset + 1);
    }
  }

  pqxx::work tx{conn, "journal_batch"};

  // 0. Never an insert into a missing partition: an index lookup in
  // journal_partitions when the partition of now() (the rows' received_at)
  // exists, its creation when the clock jumped past the ones made ahead.
  tx.exec(ensure_sql);

  // 1. Create missing offset rows, then lock them all.
  auto cluster = tx.quote(this->cluster);
  std::string keys;   // ('topic', partition), ...
  std::string values; // (cluster, 'topic', partition, 0), ...
  std::string ends;   // ('topic', partition, end), ...
  for (auto& [k, st] : parts) {
    auto topic = tx.quote(k.first);
    auto partition = pqxx::to_string(k.second);
    auto sep = keys.empty() ? "" : ", ";
    keys += sep + ("(" + topic + ", " + partition + ")");
    values += sep + ("(" + cluster + ", " + topic + ", " + partition + ", 0)");
    ends += sep + ("(" + topic + ", " + partition + ", "
                   + pqxx::to_string(st.end) + "::bigint)");
  }
  auto locked = tx.exec(
    "INSERT INTO journal_offsets (cluster_id, topic, partition, next_offset)"
    " VALUES " + values + " ON CONFLICT DO NOTHING;"
    " SELECT topic, partition, next_offset FROM journal_offsets"
    " WHERE cluster_id = " + cluster + " AND (topic, partition) IN (" + keys + ")"
    " ORDER BY topic COLLATE \"C\", partition FOR UPDATE");
  if (locked.size() != parts.size())
    throw infra_error("journal_offsets: locked "
                      + std::to_string(locked.size()) + " rows, expected "
                      + std::to_string(parts.size()));
  for (auto row : locked) {
    auto topic = row[0].as<std::string>();
    auto it = parts.find(key_less::ref{topic, row[1].as<int32_t>()});
    if (it != parts.end())
      it->second.fence = row[2].as<int64_t>();
  }

  // 2. Provenance: a record's x-replay-of claim stands only when its
  // x-replay-id names a recorded replay of that very event (table replays,
  // written by the REPLAYER before it publishes). One query for the whole
  // batch, and none when no record claims to be a replay.
  replay_ids.clear();
  recorded.clear();
  job_events.clear();
  for (auto& r : batch)
    if (r.reason == reject_reason::none && r.replay_of != 0
        && !r.replay_id.empty())
      replay_ids.push_back(r.replay_id);
  if (!replay_ids.empty()) {
    auto res = tx.exec_params("SELECT replay_id, event_id, job_id"
                              " FROM replays WHERE replay_id = ANY($1::text[])",
                              detail::text_array(replay_ids));
    for (auto row : res)
      recorded.emplace(row[0].as<std::string>(),
                       replay_row{row[1].as<int64_t>(),
                                  row[2].is_null() ? 0 : row[2].as<int64_t>()});
  }
  // The recorded replay `r` is (nullptr: none, or not of r.replay_of).
  auto verified = [&](const checked_record& r) -> const replay_row* {
    if (r.replay_of == 0 || r.replay_id.empty() || recorded.empty())
      return nullptr;
    auto i = recorded.find(r.replay_id);
    return i != recorded.end() && i->second.event == r.replay_of ? &i->second
                                                                 : nullptr;
  };

  // 2b. Resends: a bulk job's replay of an event is journalled once. The
  // (job, event) pairs of the batch already in the journal (partial index
  // event_journal_replay_job_idx); pairs repeated within the batch are
  // caught below.
  {
    std::set<int64_t> job_ids;
    std::string events; // bigint array literal items
    for (auto& r : batch) {
      auto v = r.reason == reject_reason::none ? verified(r) : nullptr;
      if (v == nullptr || v->job == 0)
        continue;
      job_ids.insert(v->job);
      events += (events.empty() ? "" : ",") + std::to_string(v->event);
    }
    if (!job_ids.empty()) {
      std::string jobs;
      for (auto j : job_ids)
        jobs += (jobs.empty() ? "" : ",") + std::to_string(j);
      // Writers of the same job's replays are serialised until commit (a
      // resend can land on another partition, i.e. another persister or
      // instance): the check below then sees the other's rows. Sorted, so
      // two writers never wait on each other in a cycle; key space 0x6a6f62
      // ("job") keeps these locks apart from the migrations' lock.
      for (auto j : job_ids)
        tx.exec("SELECT pg_advisory_xact_lock(6975330, "
                + std::to_string(static_cast<int32_t>(j % 2147483647))
                + ")");
      auto res = tx.exec_params(
        "SELECT DISTINCT replay_job, replay_of FROM event_journal"
        " WHERE replay_job = ANY($1::bigint[])"
        " AND replay_of = ANY($2::bigint[])",
        "{" + jobs + "}", "{" + events + "}");
      // A superset of the batch's pairs (any job x any event): harmless,
      // only the batch's own pairs are ever looked up.
      for (auto row : res)
        job_events.emplace(row[0].as<int64_t>(), row[1].as<int64_t>());
    }
  }

  // 3. Fence (records below the stored offset, or repeated in the batch, are
  // skipped), and encode the accepted records.
  std::vector<dlq_item> dlq;
  rows.clear();
  row_start.clear();
  row_index.clear();
  row_part.clear();
  {
    auto last = parts.end();
    for (size_t i = 0; i < batch.size(); ++i) {
      auto& r = batch[i];
      auto& st = state_of(parts, r.rec, last);
      if (r.rec.offset < st.fence) {
        ++st.skipped;
        continue;
      }
      st.fence = r.rec.offset + 1;
      if (r.reason != reject_reason::none) {
        dlq.push_back(dlq_item{i, r.reason, {}});
        continue;
      }
      auto v = verified(r);
      if (v != nullptr && v->job != 0
          && !job_events.emplace(v->job, v->event).second) {
        ++st.duplicates; // its offset is past the fence all the same
        continue;
      }
      if (rows.empty())
        rows.reserve(batch.size()
                     * ((keep_raw ? 2 : 1) * r.rec.value.size() + 160));
      row_start.push_back(rows.size());
      row_index.push_back(i);
      row_part.push_back(&st);
      copy_text::append_journal_row(rows, r, v ? v->event : 0,
                                    v ? v->job : 0, keep_raw, scratch);
    }
    row_start.push_back(rows.size());
  }

  // 4./5. COPY into event_journal, isolating refused rows.
  auto first_rejected = dlq.size();
  out.isolation_rounds = copy_journal(tx, dlq);
  {
    std::sort(dlq.begin() + first_rejected, dlq.end(),
              [](auto& a, auto& b) { return a.index < b.index; });
    auto bad = first_rejected;
    for (size_t row = 0; row < row_index.size(); ++row) {
      if (bad < dlq.size() && dlq[bad].index == row_index[row]) {
        ++bad;
        continue;
      }
      ++row_part[row]->journalled;
      auto& r = batch[row_index[row]];
      if (r.rec.timestamp_type != 0 && r.rec.timestamp_ms >= 0
          && verified(r) == nullptr)
        out.journalled_timestamps_ms.push_back(r.rec.timestamp_ms);
    }
  }

  // 6. Dead letters.
  std::map<std::pair<std::string, std::string>, uint64_t> dead;
  if (!dlq.empty()) {
    dlq_rows.clear();
    for (auto& d : dlq) {
      auto& r = batch[d.index];
      copy_text::append_dlq_row(dlq_rows, r, d.reason,
                                d.reason == reject_reason::db_rejected
                                  ? d.db_error
                                  : r.error,
                                scratch);
      ++dead[{r.rec.topic, to_string(d.reason)}];
    }
    dlq_rows.pop_back(); // libpqxx appends the last newline
    pqxx::stream_to s{tx, "event_dlq",
                      std::vector<std::string>{copy_text::dlq_columns}};
    s << detail::copy_lines{&dlq_rows};
    s.complete();
  }

  // 7. Advance the offsets of every partition of the batch.
  auto stored = tx.exec(
    "UPDATE journal_offsets AS c"
    " SET next_offset = greatest(c.next_offset, v.next_offset),"
    " updated_at = now()"
    " FROM (VALUES " + ends + ") AS v (topic, partition, next_offset)"
    " WHERE c.cluster_id = " + cluster + " AND c.topic = v.topic"
    " AND c.partition = v.partition"
    " RETURNING c.topic, c.partition, c.next_offset");
  if (stored.size() != parts.size())
    throw infra_error("journal_offsets: updated "
                      + std::to_string(stored.size()) + " rows, expected "
                      + std::to_string(parts.size()));

  // 8. Commit.
  tx.commit();

  for (auto row : stored)
    out.offsets.push_back(partition_offset{row[0].as<std::string>(),
                                           row[1].as<int32_t>(),
                                           row[2].as<int64_t>()});
  std::sort(out.offsets.begin(), out.offsets.end(), [](auto& a, auto& b) {
    return std::tie(a.topic, a.partition) < std::tie(b.topic, b.partition);
  });
  out.journalled = per_topic(parts, &partition_state::journalled);
  out.skipped = per_topic(parts, &partition_state::skipped);
  out.replay_duplicates = per_topic(parts, &partition_state::duplicates);
  for (auto& [k, n] : dead)
    out.dead_lettered.push_back(topic_count{k.first, k.second, n});

  if (rows.capacity() > max_kept_capacity)
    std::string{}.swap(rows);
  if (dlq_rows.capacity() > max_kept_capacity)
    std::string{}.swap(dlq_rows);
  return out;
}

journal_writer::journal_writer(const std::string& database_url,
                               std::string cluster_id, bool keep_raw,
                               std::string partition_interval)
  : impl_(std::make_unique<impl>()) {
  if (cluster_id.empty())
    throw std::invalid_argument("journal_writer: empty Kafka cluster id");
  if (partition_interval != "day" && partition_interval != "month")
    throw std::invalid_argument("journal_writer: partition interval must be"
                                " day or month");
  impl_->ensure_sql = "SELECT ces_journal_ensure_partitions(now(), now(), '"
                      + partition_interval + "')";
  impl_->url = database_url;
  impl_->cluster = std::move(cluster_id);
  impl_->keep_raw = keep_raw;
  impl_->db = detail::connect(impl_->url);
}

journal_writer::~journal_writer() = default;

persist_outcome journal_writer::write(const std::vector<checked_record>& batch) {
  if (batch.empty())
    return {};
  if (!connected()) {
    impl_->db.reset();
    impl_->db = detail::connect(impl_->url);
  }
  try {
    return impl_->write(batch);
  } catch (const infra_error&) {
    impl_->db.reset();
    throw;
  } catch (const pqxx::in_doubt_error& e) {
    impl_->db.reset();
    throw detail::to_infra_error(e, "journal: commit outcome unknown");
  } catch (const pqxx::failure& e) {
    // Includes data errors outside the isolated COPY (offsets, DLQ rows):
    // those are not the records' fault either.
    impl_->db.reset();
    throw detail::to_infra_error(e, "journal");
  } catch (...) {
    impl_->db.reset();
    throw;
  }
}

bool journal_writer::connected() const {
  return impl_->db != nullptr && impl_->db->conn->is_open();
}

std::vector<partition_offset>
load_offsets(const std::string& database_url, const std::string& cluster_id,
             const std::vector<std::string>& topics) {
  std::vector<partition_offset> out;
  if (topics.empty())
    return out;
  auto db = detail::connect(database_url);
  try {
    pqxx::read_transaction tx{*db->conn, "load_offsets"};
    std::string list;
    for (auto& t : topics) {
      if (!list.empty())
        list += ", ";
      list += tx.quote(t);
    }
    auto res = tx.exec("SELECT topic, partition, next_offset"
                       " FROM journal_offsets WHERE cluster_id = "
                       + tx.quote(cluster_id) + " AND topic IN (" + list + ")"
                       " ORDER BY topic COLLATE \"C\", partition");
    for (auto row : res)
      out.push_back(partition_offset{row[0].as<std::string>(),
                                     row[1].as<int32_t>(),
                                     row[2].as<int64_t>()});
  } catch (const pqxx::failure& e) {
    throw detail::to_infra_error(e, "load_offsets");
  }
  return out;
}

bool legacy_offsets_pending(const std::string& database_url,
                            const std::string& group_id) {
  auto db = detail::connect(database_url);
  try {
    pqxx::read_transaction tx{*db->conn, "legacy_offsets_pending"};
    return tx
      .exec1("SELECT EXISTS (SELECT 1 FROM legacy_group_offsets"
             " WHERE group_id = " + tx.quote(group_id) + ")")[0]
      .as<bool>();
  } catch (const pqxx::failure& e) {
    throw detail::to_infra_error(e, "legacy_offsets_pending");
  }
}

size_t adopt_group_offsets(const std::string& database_url,
                           const std::string& cluster_id,
                           const std::string& group_id) {
  if (cluster_id.empty())
    throw std::invalid_argument("adopt_group_offsets: empty Kafka cluster id");
  auto db = detail::connect(database_url);
  try {
    pqxx::work tx{*db->conn, "adopt_group_offsets"};
    // DELETE locks the legacy rows: a second instance doing the same waits,
    // then finds them gone. greatest() keeps a position that a writer (of
    // this group or another) has already moved further.
    auto res = tx.exec(
      "WITH moved AS (DELETE FROM legacy_group_offsets WHERE group_id = "
      + tx.quote(group_id)
      + " RETURNING topic, partition, next_offset)"
        " INSERT INTO journal_offsets (cluster_id, topic, partition,"
        " next_offset) SELECT " + tx.quote(cluster_id)
      + ", topic, partition, next_offset FROM moved"
        " ON CONFLICT (cluster_id, topic, partition) DO UPDATE"
        " SET next_offset = greatest(journal_offsets.next_offset,"
        " excluded.next_offset), updated_at = now()");
    tx.commit();
    return static_cast<size_t>(res.affected_rows());
  } catch (const pqxx::failure& e) {
    throw detail::to_infra_error(e, "adopt_group_offsets");
  }
}

} // namespace ces::storage
