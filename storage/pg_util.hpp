// Internal to storage/: connecting with libpqxx and classifying its errors.
// Includes pqxx, so only storage/*.cpp include it.
#pragma once

#include "storage/journal.hpp"

#include <pqxx/pqxx>

#include <exception>
#include <memory>
#include <string>
#include <vector>

namespace ces::storage::detail {

/// A connection whose notices are swallowed (storage/ does no logging:
/// otherwise libpqxx prints server notices to stderr).
struct pg_session {
  std::unique_ptr<pqxx::connection> conn;
  std::unique_ptr<pqxx::quiet_errorhandler> quiet; // destroyed before conn
};

/// Connects to `url` with client_encoding pinned to UTF8 (whatever
/// PGCLIENTENCODING or the URL say: the journal's text is UTF-8). Throws
/// infra_error when PostgreSQL is unreachable.
std::unique_ptr<pg_session> connect(const std::string& url);

/// connect(url), then runs `setup` (session settings such as SET
/// application_name) on the new connection. A failure of the setup is an
/// infra_error naming `what`.
std::unique_ptr<pg_session> connect_session(
  const std::string& url, const std::vector<std::string>& setup,
  const std::string& what);

/// `url` (a URI or key=value string) as a key=value connection string with
/// client_encoding=UTF8 in place of any client_encoding it had. A string
/// libpq cannot parse is returned unchanged (connecting then fails with
/// libpq's own message).
std::string utf8_conninfo(const std::string& url);

/// Throws encoding_error unless the connected database's server encoding is
/// UTF8.
void require_utf8_database(pqxx::connection& conn);

/// `items` as a PostgreSQL array literal of quoted elements (`{"a","b"}`;
/// `{}` when empty), to pass as one parameter cast to text[]: values are
/// never concatenated into SQL.
std::string text_array(const std::vector<std::string>& items);

/// A text field's value; NULL gives "".
std::string opt_text(const pqxx::field& f);

/// A text[] field's elements; NULL gives none.
std::vector<std::string> text_array_elements(const pqxx::field& f);

/// True for SQLSTATE classes 22 (data exception), 23 (integrity constraint
/// violation), 54 (program limit exceeded) and P0 (PL/pgSQL: a trigger's
/// RAISE EXCEPTION, P0001 by default): the row is at fault, not the
/// infrastructure.
bool is_data_sqlstate(const std::string& sqlstate) noexcept;

/// True for SQLSTATE classes that say the server, not the statement, failed:
/// 08 (connection), 40 (rollback: serialization, deadlock), 53 (resources),
/// 57 (operator intervention), 58 (system error), XX (internal error).
bool is_infra_sqlstate(const std::string& sqlstate) noexcept;

/// True when `e` is a pqxx::sql_error with a data SQLSTATE.
bool is_data_error(const std::exception& e) noexcept;

/// The server's message in one line: primary message and DETAIL/HINT, without
/// the CONTEXT (which repeats the row), followed by " (SQLSTATE xxxxx)" for
/// SQL errors.
std::string describe(const std::exception& e);

/// For an error raised by `COPY <table>`: the line of the COPY data that
/// PostgreSQL blamed (1-based), 0 when the message does not say.
size_t copy_error_line(const std::exception& e, const std::string& table);

/// An infra_error for `e`, prefixed with `what_failed`.
infra_error to_infra_error(const std::exception& e, const std::string& what_failed);

/// The connection of a store (auth_store, job_store, idempotency_store):
/// made on first use with its session settings, made again on the next
/// run() after a failure. Not thread-safe.
class store_session {
public:
  /// `name`: the application_name suffix, the transaction name and what
  /// failure messages name; `setup`: more session statements (SET ...);
  /// statement_timeout_ms 0: the server's default.
  store_session(std::string url, std::string name,
                std::vector<std::string> setup, int statement_timeout_ms);

  /// Runs `f(transaction)` in a read-write transaction and commits. The
  /// caller's own exceptions pass; a libpqxx failure drops the connection
  /// and becomes an infra_error naming `what`.
  template <class F>
  auto run(const char* what, F f) {
    ensure_connected();
    try {
      pqxx::work tx{*db_->conn, name_};
      auto out = f(tx);
      tx.commit();
      return out;
    } catch (const pqxx::failure& e) {
      db_.reset();
      throw to_infra_error(e, what);
    }
  }

  /// True when the connection is open.
  bool connected() const;

private:
  void ensure_connected();

  std::string url_;
  std::string name_;
  std::vector<std::string> setup_;
  std::unique_ptr<pg_session> db_;
};

} // namespace ces::storage::detail
