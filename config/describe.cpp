#include "config/config.hpp"
#include "config/mask.hpp"
#include "config/table.hpp"

#include <cstring>
#include <ostream>
#include <sstream>

namespace ces {

using namespace detail;

namespace {

/// Writes `words` separated by spaces, indented by 6 and wrapped at 79
/// columns.
void wrap(std::ostream& out, const std::vector<std::string>& words) {
  constexpr size_t indent = 6;
  constexpr size_t width = 79;
  size_t col = 0;
  for (auto& word : words) {
    if (col > indent && col + 1 + word.size() > width) {
      out << '\n';
      col = 0;
    }
    if (col == 0) {
      out << std::string(indent, ' ') << word;
      col = indent + word.size();
    } else {
      out << ' ' << word;
      col += 1 + word.size();
    }
  }
  out << '\n';
}

} // namespace

std::vector<std::pair<std::string, std::string>>
describe(const settings& s) {
  std::vector<std::pair<std::string, std::string>> result;
  for (auto& d : defs()) {
    bool properties = std::string_view{d.name} == "kafka-properties";
    std::string value = std::visit(
      [&](auto ptr) -> std::string {
        const auto& v = s.*ptr;
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>)
          return v;
        else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
          std::vector<std::string> xs;
          for (auto& x : v) { // round-trips through split_list
            std::string item;
            for (char c : properties ? mask_property(x) : x)
              item += c == ',' ? std::string{"\\,"} : std::string(1, c);
            xs.emplace_back(std::move(item));
          }
          return join(xs);
        } else {
          return std::to_string(v);
        }
      },
      d.field);
    if (std::string_view{d.name} == "database-url")
      value = mask_database_url(value);
    if (std::string_view{d.name} == "dlq-webhook-url")
      value = mask_url(value);
    if (std::string_view{d.name} == "dlq-webhook-secret" && !value.empty())
      value = "***";
    result.emplace_back(d.name, std::move(value));
  }
  return result;
}

void print_help(std::ostream& out) {
  out << "Usage: " << program_name
      << " [--SETTING=VALUE ...] [--config-file=PATH]\n"
      << "       " << program_name
      << " keys create|list|revoke ...  (API keys: keys --help)\n"
         "\n"
         "Consumes CRM events from Kafka and journals them in PostgreSQL.\n"
         "\n"
         "Every setting is a flag (--name=VALUE or --name VALUE), an "
         "environment\n"
         "variable (NAME), or a key in the [global] section of the INI file "
         "given by\n"
         "--config-file=PATH or CONFIG_FILE. Precedence: flag > environment "
         "> INI file\n"
         "> default. Lists are comma-separated in flags and environment "
         "(\"\\,\" is a\n"
         "literal comma); the INI file takes \"a,b\" or [\"a\", \"b\"].\n";
  const char* group = nullptr;
  for (auto& d : defs()) {
    if (group == nullptr || std::strcmp(group, d.group) != 0) {
      group = d.group;
      out << '\n' << group << ":\n";
    }
    auto flag = std::string{"--"} + d.name + '=' + d.arg;
    out << "  " << flag;
    if (flag.size() < 36)
      out << std::string(36 - flag.size(), ' ');
    else
      out << ' ';
    out << env_name(d.name) << '\n';
    std::vector<std::string> words;
    std::istringstream help{d.help};
    for (std::string w; help >> w;)
      words.push_back(w);
    auto dflt = default_text(d);
    // The default stays on one line.
    words.push_back(d.required ? "(required)"
                               : "(default: " + (dflt.empty() ? "none" : dflt)
                                   + ")");
    wrap(out, words);
  }
  out << "\n"
         "Other:\n"
         "  -h, --help                          print this help and exit\n"
         "  --dump-config                       print the effective settings "
         "(secrets\n"
         "                                      masked) and exit\n"
         "  --config-file=PATH                  CONFIG_FILE\n"
         "      INI file with a [global] section (default: none)\n"
         "  CAF runtime options such as --scheduler.max-threads=N are "
         "accepted too.\n"
         "\n"
         "Subcommands (no service started; the database from DATABASE_URL,\n"
         "--database-url or the INI file):\n"
         "  keys create --name N --role R --tenants t1,t2|'*' [--expires 90d]\n"
         "      create an API key (printed once, alone on stdout's first "
         "line)\n"
         "  keys list [--all] [--json]          the keys (never their "
         "secrets)\n"
         "  keys revoke N                       revoke the active key N\n";
}

} // namespace ces
