// `crm-events-sink keys ...`: API keys managed against DATABASE_URL with no
// service running (storage::auth_store). No CAF, no RESTinio.
//
//   keys create --name N --role R --tenants t1,t2|'*' [--expires 90d]
//       stdout: the key alone on one line (shown once); stderr: what was
//       created. Exit 0; 2 invalid input; 1 name in use / database error.
//   keys list [--all] [--json]
//       keys not revoked (--all: every key) by name: a text table with a
//       header line, or one JSON object per line (key_row_json). Never the
//       key or its hash.
//   keys revoke N
//       exit 1 "no active key named N" when there is none.
//
// Every change (and a refused create/revoke) is an audit_log row of
// principal "cli:<user>" (role admin, all tenants, no status).
#pragma once

#include "storage/auth_store.hpp"

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ces::api {

/// Runs the keys subcommand `args` (the arguments after "keys") against
/// `database_url` (applying the schema migrations first, retrying briefly
/// while PostgreSQL is unreachable). Returns the exit code: 0 done (also
/// for --help), 2 usage or invalid input (also an empty database_url),
/// 1 database unreachable, migration failed, name conflict or no such key;
/// each failure explained in one line on `err`.
int run_keys_cli(const std::vector<std::string>& args,
                 const std::string& database_url, std::ostream& out,
                 std::ostream& err);

/// True when `args` (after "keys") ask for the usage text: no arguments
/// or -h/--help/help anywhere. run_keys_cli() then needs no database.
bool keys_cli_wants_help(const std::vector<std::string>& args);

/// Prints the usage of the keys subcommands.
void print_keys_usage(std::ostream& out);

/// A key lifetime "N" + d/h/m/s ("90d", "12h", "30m", "45s") in seconds;
/// nullopt unless 0 < N and the lifetime is at most 10 years (3653 days).
std::optional<int64_t> parse_expiry(std::string_view text);

/// A tenant list: "*" (all) or comma-separated tenant ids (spaces around
/// each trimmed).
struct tenant_list {
  bool all = false;
  std::vector<std::string> tenants;
};

/// Parses "--tenants": nullopt when empty, or an element is empty, "*"
/// among others, or holds a control character.
std::optional<tenant_list> parse_tenant_list(std::string_view text);

/// One key as a compact JSON object (never the key or its hash):
/// {"id":1,"name":"ops","role":"operator","tenants":["t1"] or "*",
///  "created_at":"...Z","created_by":"cli:me","expires_at":null,
///  "revoked_at":null,"last_used_at":null} (timestamps null when NULL).
std::string key_row_json(const storage::api_key_row& k);

/// "cli:" + $USER (else the passwd name of the uid, else "uid:N").
std::string cli_principal();

} // namespace ces::api
