#include "storage/pg_util.hpp"

#include <libpq-fe.h>

#include <cstring>

namespace ces::storage::detail {

std::string utf8_conninfo(const std::string& url) {
  char* err = nullptr;
  auto opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    PQfreemem(err);
    return url;
  }
  std::string out;
  for (auto o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr || std::strcmp(o->keyword, "client_encoding") == 0)
      continue;
    out += o->keyword;
    out += "='";
    for (auto c = o->val; *c != '\0'; ++c) {
      if (*c == '\'' || *c == '\\')
        out += '\\';
      out += *c;
    }
    out += "' ";
  }
  PQconninfoFree(opts);
  return out + "client_encoding='UTF8'";
}

std::unique_ptr<pg_session> connect_session(
  const std::string& url, const std::vector<std::string>& setup,
  const std::string& what) {
  auto s = connect(url);
  try {
    pqxx::nontransaction tx{*s->conn, "session_setup"};
    for (auto& statement : setup)
      tx.exec(statement);
  } catch (const pqxx::failure& e) {
    throw to_infra_error(e, what + " session setup");
  }
  return s;
}

std::unique_ptr<pg_session> connect(const std::string& url) {
  auto s = std::make_unique<pg_session>();
  try {
    s->conn = std::make_unique<pqxx::connection>(utf8_conninfo(url));
    // An `options=-c client_encoding=...` in the URL would still win.
    if (s->conn->get_client_encoding() != "UTF8")
      s->conn->set_client_encoding("UTF8");
  } catch (const std::exception& e) {
    throw to_infra_error(e, "cannot connect to PostgreSQL");
  }
  s->quiet = std::make_unique<pqxx::quiet_errorhandler>(*s->conn);
  return s;
}

void require_utf8_database(pqxx::connection& conn) {
  std::string enc, db;
  try {
    pqxx::nontransaction nt{conn};
    auto row = nt.exec1("SELECT current_setting('server_encoding'),"
                        " current_database()");
    enc = row[0].as<std::string>();
    db = row[1].as<std::string>();
  } catch (const pqxx::failure& e) {
    throw to_infra_error(e, "cannot read the database encoding");
  }
  if (enc != "UTF8")
    throw encoding_error(
      "database " + db + " has server encoding " + enc
      + "; crm-events-sink needs a UTF8 database (CREATE DATABASE ..."
        " ENCODING 'UTF8' TEMPLATE template0)");
}

std::string text_array(const std::vector<std::string>& items) {
  std::string out = "{";
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0)
      out += ',';
    // Quoted element: backslash and double quote escaped.
    out += '"';
    for (char c : items[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  out += '}';
  return out;
}

bool is_data_sqlstate(const std::string& st) noexcept {
  if (st.size() != 5)
    return false;
  return (st[0] == '2' && (st[1] == '2' || st[1] == '3'))
         || (st[0] == '5' && st[1] == '4') || (st[0] == 'P' && st[1] == '0');
}

bool is_infra_sqlstate(const std::string& st) noexcept {
  if (st.size() != 5)
    return false;
  auto cls = st.substr(0, 2);
  return cls == "08" || cls == "40" || cls == "53" || cls == "57"
         || cls == "58" || cls == "XX";
}

bool is_data_error(const std::exception& e) noexcept {
  auto se = dynamic_cast<const pqxx::sql_error*>(&e);
  if (se == nullptr || !is_data_sqlstate(se->sqlstate()))
    return false;
  // 23514 "no partition of relation ... found for row": the journal's
  // partitions (a partition detached or dropped under the batch), not the
  // row; the batch is retried as a whole instead of dead-lettered.
  return std::strstr(se->what(), "no partition of relation") == nullptr;
}

std::string describe(const std::exception& e) {
  std::string msg = e.what();
  // libpq: "ERROR:  primary\nDETAIL:  ...\nHINT:  ...\nCONTEXT:  ...\n".
  if (auto ctx = msg.find("\nCONTEXT:"); ctx != std::string::npos)
    msg.erase(ctx);
  if (msg.compare(0, 8, "ERROR:  ") == 0)
    msg.erase(0, 8);
  else if (msg.compare(0, 8, "FATAL:  ") == 0)
    msg.erase(0, 8);
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' '))
    msg.pop_back();
  for (auto field : {"\nDETAIL:  ", "\nHINT:  "})
    if (auto i = msg.find(field); i != std::string::npos)
      msg.erase(i + std::char_traits<char>::length(field) - 1, 1);
  for (size_t i = 0; (i = msg.find('\n', i)) != std::string::npos;)
    msg.replace(i, 1, "; ");
  if (msg.size() > 2000) { // e.g. a DETAIL quoting a long JSON token
    msg.resize(2000);
    msg += "...";
  }
  if (auto se = dynamic_cast<const pqxx::sql_error*>(&e);
      se != nullptr && !se->sqlstate().empty())
    msg += " (SQLSTATE " + se->sqlstate() + ")";
  return msg;
}

size_t copy_error_line(const std::exception& e, const std::string& table) {
  std::string msg = e.what();
  auto needle = "COPY " + table + ", line ";
  auto pos = msg.find(needle);
  if (pos == std::string::npos)
    return 0;
  size_t line = 0;
  for (pos += needle.size(); pos < msg.size() && msg[pos] >= '0'
                             && msg[pos] <= '9' && line < 100000000;
       ++pos)
    line = line * 10 + static_cast<size_t>(msg[pos] - '0');
  return line;
}

infra_error to_infra_error(const std::exception& e,
                           const std::string& what_failed) {
  return infra_error(what_failed + ": " + describe(e));
}

store_session::store_session(std::string url, std::string name,
                             std::vector<std::string> setup,
                             int statement_timeout_ms)
  : url_(std::move(url)), name_(std::move(name)), setup_(std::move(setup)) {
  setup_.insert(setup_.begin(),
                "SET application_name = 'crm-events-sink " + name_ + "'");
  if (statement_timeout_ms > 0)
    setup_.push_back("SET statement_timeout = "
                     + std::to_string(statement_timeout_ms));
}

bool store_session::connected() const {
  return db_ != nullptr && db_->conn->is_open();
}

void store_session::ensure_connected() {
  if (connected())
    return;
  db_.reset();
  db_ = connect_session(url_, setup_, name_);
}

std::string opt_text(const pqxx::field& f) {
  return f.is_null() ? std::string{} : f.as<std::string>();
}

std::vector<std::string> text_array_elements(const pqxx::field& f) {
  std::vector<std::string> out;
  if (f.is_null())
    return out;
  auto parser = f.as_array();
  for (;;) {
    auto [kind, value] = parser.get_next();
    if (kind == pqxx::array_parser::done)
      break;
    if (kind == pqxx::array_parser::string_value)
      out.push_back(std::move(value));
  }
  return out;
}

} // namespace ces::storage::detail
