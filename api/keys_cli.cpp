#include "api/keys_cli.hpp"

#include "api/auth.hpp"
#include "storage/journal.hpp"

#include <nlohmann/json.hpp>

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <map>
#include <ostream>
#include <thread>

namespace ces::api {

namespace {

const char* const prog = "crm-events-sink";

/// Invalid input: exit 2 with this message.
struct usage_error {
  std::string message;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

/// `args` after the subcommand as --flag VALUE / --flag=VALUE (for
/// `valued`) and bare --flag (for `bare`); positionals in `positional`.
std::map<std::string, std::string>
parse_flags(const std::vector<std::string>& args, size_t first,
            const std::vector<std::string>& valued,
            const std::vector<std::string>& bare,
            std::vector<std::string>* positional) {
  std::map<std::string, std::string> flags;
  auto known = [](const std::vector<std::string>& xs, const std::string& x) {
    return std::find(xs.begin(), xs.end(), x) != xs.end();
  };
  for (size_t i = first; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a.size() < 2 || a[0] != '-') {
      if (positional == nullptr)
        throw usage_error{"unexpected argument \"" + a + "\""};
      positional->push_back(a);
      continue;
    }
    auto eq = a.find('=');
    auto name = a.substr(0, eq);
    std::string value;
    if (known(valued, name)) {
      if (eq != std::string::npos)
        value = a.substr(eq + 1);
      else if (i + 1 < args.size())
        value = args[++i];
      else
        throw usage_error{"missing value for " + name};
    } else if (known(bare, name) && eq == std::string::npos) {
      value = "1";
    } else {
      throw usage_error{"unknown flag " + name};
    }
    if (!flags.emplace(name, value).second)
      throw usage_error{name + " given twice"};
  }
  return flags;
}

std::string tenants_text(const storage::api_key_row& k) {
  if (k.all_tenants)
    return "*";
  std::string out;
  for (auto& t : k.tenants)
    out += (out.empty() ? "" : ",") + t;
  return out;
}

audit_entry cli_audit() {
  audit_entry a;
  a.who.principal = cli_principal();
  a.who.role = "admin";
  a.who.scope.all = true;
  return a;
}

/// Records a refused create/revoke; a failure to record it is reported but
/// does not change the exit code (the action failed anyway).
void audit_failure(storage::auth_store& store, const std::string& action,
                   const std::string& name, const std::string& reason,
                   std::ostream& err) {
  auto a = cli_audit();
  a.action = action;
  a.target = "key/" + name;
  a.outcome = "failed";
  a.parameters = nlohmann::json{{"reason", reason}}.dump();
  try {
    store.write_audit({a});
  } catch (const std::exception& e) {
    err << prog << ": could not write the audit row: " << e.what() << '\n';
  }
}

/// Applies the migrations, retrying for a few seconds while PostgreSQL is
/// unreachable. Returns 0 or the exit code (after a line on `err`).
/// Arguments are checked before: an empty `url` is invalid input.
int migrate_briefly(const std::string& url, std::ostream& err) {
  if (url.empty())
    throw usage_error{"no database: set DATABASE_URL, --database-url or "
                      "the INI file"};
  for (int attempt = 1;; ++attempt) {
    try {
      storage::migrate(url);
      return 0;
    } catch (const storage::infra_error& e) {
      if (attempt >= 3) {
        err << prog << ": database unreachable: " << e.what() << '\n';
        return 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500 * attempt));
    } catch (const std::exception& e) {
      err << prog << ": schema migration failed: " << e.what() << '\n';
      return 1;
    }
  }
}

int cmd_create(const std::vector<std::string>& args, const std::string& url,
               std::ostream& out, std::ostream& err) {
  auto flags = parse_flags(args, 1, {"--name", "--role", "--tenants",
                                     "--expires"},
                           {}, nullptr);
  storage::new_key k;
  k.name = flags["--name"];
  if (k.name.empty())
    throw usage_error{"--name is required"};
  if (!storage::valid_key_name(k.name))
    throw usage_error{"invalid --name: 1 to 64 letters, digits, '.', '_' "
                      "or '-'"};
  k.role = flags["--role"];
  if (!auth::parse_role(k.role))
    throw usage_error{"invalid or missing --role: viewer, operator or admin"};
  if (flags.count("--tenants") == 0)
    throw usage_error{"--tenants t1,t2 or '*' is required"};
  auto tenants = parse_tenant_list(flags["--tenants"]);
  if (!tenants)
    throw usage_error{"invalid --tenants: comma-separated tenant ids (none "
                      "empty, no control characters) or '*' alone"};
  k.all_tenants = tenants->all;
  k.tenants = tenants->tenants;
  if (flags.count("--expires") != 0) {
    auto secs = parse_expiry(flags["--expires"]);
    if (!secs)
      throw usage_error{"invalid --expires: a positive number with d, h, m "
                        "or s (e.g. 90d), at most 10 years"};
    k.expires_in_s = *secs;
  }
  k.created_by = cli_principal();
  if (auto rc = migrate_briefly(url, err); rc != 0)
    return rc;
  storage::auth_store store{url};
  storage::created_key c;
  try {
    c = store.create_key(k, cli_audit());
  } catch (const storage::key_conflict&) {
    audit_failure(store, "key.create", k.name, "name in use", err);
    err << prog << ": a key named \"" << k.name
        << "\" exists already (revoke it first, or choose another name)\n";
    return 1;
  } catch (const std::invalid_argument& e) {
    throw usage_error{e.what()};
  }
  out << c.key << '\n';
  out.flush();
  if (!out) {
    err << prog << ": created key \"" << c.row.name
        << "\" but could not print it: revoke it (keys revoke "
        << c.row.name << ") and create another\n";
    return 1;
  }
  err << prog << ": created key \"" << c.row.name << "\": role "
      << c.row.role << ", tenants " << tenants_text(c.row) << ", expires "
      << (c.row.expires_at.empty() ? "never" : c.row.expires_at) << '\n'
      << prog << ": the key above is shown only this once (only its SHA-256 "
                 "is stored): keep it in a secret store\n";
  return 0;
}

int cmd_list(const std::vector<std::string>& args, const std::string& url,
             std::ostream& out, std::ostream& err) {
  auto flags = parse_flags(args, 1, {}, {"--all", "--json"}, nullptr);
  if (auto rc = migrate_briefly(url, err); rc != 0)
    return rc;
  storage::auth_store store{url};
  auto keys = store.list_keys(flags.count("--all") != 0);
  if (flags.count("--json") != 0) {
    for (auto& k : keys)
      out << key_row_json(k) << '\n';
    out.flush();
    return 0;
  }
  std::vector<std::vector<std::string>> table{
    {"NAME", "ROLE", "TENANTS", "CREATED_AT", "CREATED_BY", "EXPIRES_AT",
     "REVOKED_AT", "LAST_USED_AT"}};
  auto dash = [](const std::string& s) { return s.empty() ? "-" : s; };
  for (auto& k : keys)
    table.push_back({k.name, k.role, tenants_text(k), dash(k.created_at),
                     dash(k.created_by), dash(k.expires_at),
                     dash(k.revoked_at), dash(k.last_used_at)});
  std::vector<size_t> width(table[0].size(), 0);
  for (auto& row : table)
    for (size_t i = 0; i < row.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  for (auto& row : table) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out << line << '\n';
  }
  out.flush();
  return 0;
}

int cmd_revoke(const std::vector<std::string>& args, const std::string& url,
               std::ostream& err) {
  std::vector<std::string> names;
  parse_flags(args, 1, {}, {}, &names);
  if (names.size() != 1)
    throw usage_error{"keys revoke takes one key name"};
  auto& name = names[0];
  if (!storage::valid_key_name(name))
    throw usage_error{"invalid key name: 1 to 64 letters, digits, '.', '_' "
                      "or '-'"};
  if (auto rc = migrate_briefly(url, err); rc != 0)
    return rc;
  storage::auth_store store{url};
  if (!store.revoke_key(name, cli_audit())) {
    audit_failure(store, "key.revoke", name, "no active key", err);
    err << prog << ": no active key named \"" << name << "\"\n";
    return 1;
  }
  err << prog << ": revoked key \"" << name << "\"\n";
  return 0;
}

} // namespace

bool keys_cli_wants_help(const std::vector<std::string>& args) {
  return args.empty()
         || std::any_of(args.begin(), args.end(), [](const std::string& a) {
              return a == "-h" || a == "--help" || a == "help";
            });
}

void print_keys_usage(std::ostream& out) {
  out << "Usage: " << prog
      << " keys create --name NAME --role ROLE --tenants T1,T2|'*'\n"
         "                            [--expires 90d]\n"
         "       "
      << prog << " keys list [--all] [--json]\n"
      << "       " << prog << " keys revoke NAME\n"
      << "\n"
         "Manages the operator API keys in PostgreSQL, with no service "
         "running. The\n"
         "database is DATABASE_URL, --database-url=URL or the INI file "
         "(CONFIG_FILE,\n"
         "--config-file=PATH); the schema is migrated first.\n"
         "\n"
         "  create  prints the new key alone on stdout's first line; it is "
         "shown only\n"
         "          once (only its SHA-256 is stored). ROLE: viewer, "
         "operator, admin.\n"
         "          --tenants: the tenants it sees, or '*' for all. "
         "--expires: N followed\n"
         "          by d, h, m or s (at most 10 years; default: never).\n"
         "  list    keys not revoked (--all: also revoked ones), never the "
         "secret;\n"
         "          --json: one JSON object per line.\n"
         "  revoke  revokes the active key NAME at once.\n"
         "\n"
         "Exit: 0 done, 2 invalid arguments, 1 database unreachable, name in "
         "use or\n"
         "no such key. Every change is recorded in audit_log as "
         "cli:<user>.\n";
}

std::optional<int64_t> parse_expiry(std::string_view text) {
  if (text.size() < 2 || text.size() > 12)
    return std::nullopt;
  int64_t unit = 0;
  switch (text.back()) {
  case 'd': unit = 86400; break;
  case 'h': unit = 3600; break;
  case 'm': unit = 60; break;
  case 's': unit = 1; break;
  default: return std::nullopt;
  }
  int64_t n = 0;
  for (char c : text.substr(0, text.size() - 1)) {
    if (c < '0' || c > '9')
      return std::nullopt;
    n = n * 10 + (c - '0'); // at most 11 digits: no overflow
  }
  constexpr int64_t ten_years = int64_t{3653} * 86400;
  if (n <= 0 || n > ten_years / unit)
    return std::nullopt;
  return n * unit;
}

std::optional<tenant_list> parse_tenant_list(std::string_view text) {
  tenant_list out;
  if (trim(text) == "*") {
    out.all = true;
    return out;
  }
  size_t start = 0;
  for (;;) {
    auto comma = text.find(',', start);
    auto item = trim(text.substr(start, comma == std::string_view::npos
                                          ? std::string_view::npos
                                          : comma - start));
    if (item.empty() || item == "*")
      return std::nullopt;
    for (unsigned char c : item)
      if (c < 0x20 || c == 0x7f)
        return std::nullopt;
    out.tenants.emplace_back(item);
    if (comma == std::string_view::npos)
      break;
    start = comma + 1;
  }
  return out;
}

std::string key_row_json(const storage::api_key_row& k) {
  using nlohmann::json;
  auto ts = [](const std::string& s) { return s.empty() ? json() : json(s); };
  json j = json::object();
  j["id"] = k.id;
  j["name"] = k.name;
  j["role"] = k.role;
  j["tenants"] = k.all_tenants ? json("*") : json(k.tenants);
  j["created_at"] = ts(k.created_at);
  j["created_by"] = k.created_by;
  j["expires_at"] = ts(k.expires_at);
  j["revoked_at"] = ts(k.revoked_at);
  j["last_used_at"] = ts(k.last_used_at);
  // Members in this order (nlohmann sorts objects: build the text).
  std::string out = "{";
  for (auto name : {"id", "name", "role", "tenants", "created_at",
                    "created_by", "expires_at", "revoked_at",
                    "last_used_at"}) {
    if (out.size() > 1)
      out += ',';
    out += json(name).dump() + ':'
           + j[name].dump(-1, ' ', false, json::error_handler_t::replace);
  }
  return out + '}';
}

std::string cli_principal() {
  if (auto user = std::getenv("USER"); user != nullptr && *user != '\0')
    return std::string("cli:") + user;
  if (auto pw = getpwuid(getuid()); pw != nullptr && pw->pw_name != nullptr)
    return std::string("cli:") + pw->pw_name;
  return "cli:uid:" + std::to_string(getuid());
}

int run_keys_cli(const std::vector<std::string>& args,
                 const std::string& database_url, std::ostream& out,
                 std::ostream& err) {
  if (keys_cli_wants_help(args)) {
    print_keys_usage(args.empty() ? err : out);
    return args.empty() ? 2 : 0;
  }
  try {
    const auto& cmd = args[0];
    if (cmd != "create" && cmd != "list" && cmd != "revoke")
      throw usage_error{"unknown keys subcommand \"" + cmd
                        + "\" (create, list, revoke)"};
    if (cmd == "create")
      return cmd_create(args, database_url, out, err);
    if (cmd == "list")
      return cmd_list(args, database_url, out, err);
    return cmd_revoke(args, database_url, err);
  } catch (const usage_error& e) {
    err << prog << ": keys: " << e.message << " (see " << prog
        << " keys --help)\n";
    return 2;
  } catch (const storage::infra_error& e) {
    err << prog << ": database unreachable or failing: " << e.what() << '\n';
    return 1;
  } catch (const std::exception& e) {
    err << prog << ": keys: " << e.what() << '\n';
    return 1;
  }
}

} // namespace ces::api
