// service_config::load: INI file, environment and flags into `values`.
//
// Our settings never go through CAF's command-line syntax: each value is
// turned into a typed caf::config_value (a string, a list of strings, an
// integer) and stored through its CAF option, in order of precedence: INI
// file, then environment, then flags (later flags win). CAF parses only what
// is left of the command line (its own options such as
// --scheduler.max-threads=N), and never the INI file itself: our strict pass
// stores CAF's sections too.
#include "config/config.hpp"
#include "config/table.hpp"

#include <caf/config_option_set.hpp>
#include <caf/config_value.hpp>
#include <caf/error.hpp>
#include <caf/pec.hpp>
#include <caf/settings.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

namespace ces {

using namespace detail;

service_config::service_config() {
  // No implicit caf-application.ini: a config file only when asked for.
  config_file_path.clear();
  opt_group group{custom_options_, "global"};
  for (auto& d : defs())
    std::visit([&](auto ptr) { group.add(values.*ptr, d.name, d.help); },
               d.field);
}

config_result service_config::load(int argc, char** argv) {
  return load(
    argc, argv, [](const char* name) { return std::getenv(name); },
    std::cout, std::cerr);
}

namespace {

struct fail {
  std::string message;
};

/// `raw` (a flag's or an environment variable's value) is not of the type
/// of setting `d`.
fail bad_value(const setting_def& d, const std::string& raw, bool from_env) {
  return fail{"invalid setting " + label(d) + ": " + quoted(raw) + " "
              + type_problem(kind_of(d))
              + (from_env ? " (from the environment)" : "")};
}

/// The typed value of one of our settings written as text (a flag or an
/// environment variable): a string as is, a list comma-separated (or in
/// CAF's list syntax when it starts with '['), an integer in range.
/// Throws bad_value() when `raw` is not of the setting's type.
caf::config_value typed_value(const setting_def& d, const std::string& raw,
                              bool from_env) {
  auto bad = [&] { return bad_value(d, raw, from_env); };
  switch (kind_of(d)) {
    case kind::string:
      return caf::config_value{raw};
    case kind::list: {
      auto t = trim(raw);
      if (!t.empty() && t.front() == '[') {
        auto xs = caf::config_value::parse(t);
        if (!xs)
          throw bad();
        return std::move(*xs);
      }
      caf::config_value::list xs;
      for (auto& x : split_list(raw))
        xs.emplace_back(std::move(x));
      return caf::config_value{std::move(xs)};
    }
    case kind::integer:
      if (auto v = parse_int<int>(raw))
        return caf::config_value{static_cast<int64_t>(*v)};
      break;
    case kind::size:
      if (auto v = parse_int<size_t>(raw))
        return caf::config_value{static_cast<int64_t>(*v)};
      break;
    case kind::port:
      if (auto v = parse_int<uint16_t>(raw); v && *v != 0)
        return caf::config_value{static_cast<int64_t>(*v)};
      break;
  }
  throw bad();
}

/// The argument a CAF parser error is about, or "".
std::string error_argument(const caf::error& e) {
  if (e.context().match_element<caf::settings>(0))
    if (auto s = caf::get_if<std::string>(
          &e.context().get_as<caf::settings>(0), "argument"))
      return *s;
  if (e.context().match_element<std::string>(0))
    return e.context().get_as<std::string>(0);
  return {};
}

/// "line L, column C" of a CAF parser error, or "".
std::string error_position(const caf::error& e) {
  if (e.context().match_element<caf::settings>(0)) {
    auto& s = e.context().get_as<caf::settings>(0);
    auto line = caf::get_if<int64_t>(&s, "line");
    auto column = caf::get_if<int64_t>(&s, "column");
    if (line && column)
      return "line " + std::to_string(*line) + ", column "
             + std::to_string(*column);
  }
  return {};
}

std::string type_name(const caf::config_option& opt) {
  return std::string{opt.type_name().data(), opt.type_name().size()};
}

} // namespace

config_result service_config::load(
  int argc, char** argv, std::function<const char*(const char*)> getenv_fn,
  std::ostream& out, std::ostream& err) {
  std::vector<std::string> user_args;
  for (int i = 1; i < argc; ++i)
    user_args.emplace_back(argv[i]);
  // --help wins over everything else, even over broken arguments.
  for (auto& a : user_args)
    if (a == "-h" || a == "-?" || a == "--help" || a == "--long-help") {
      print_help(out);
      return {false, 0};
    }
  // Stores a typed value of one of our settings through its CAF option.
  auto store = [&](const setting_def& d, const caf::config_value& v) {
    auto opt = custom_options_.qualified_name_lookup("global", d.name);
    if (opt->check(v))
      return false;
    opt->store(v);
    return true;
  };
  try {
    // 1. The command line, read first (it names the config file), applied
    //    last. Our settings are kept as (setting, value), in order.
    std::vector<std::pair<const setting_def*, std::string>> flags;
    std::vector<std::string> caf_args; // everything else: CAF decides
    std::optional<std::string> config_file;
    bool dump = false;
    for (size_t i = 0; i < user_args.size(); ++i) {
      const auto& a = user_args[i];
      if (a == "--dump-config") {
        dump = true;
        continue;
      }
      if (!starts_with(a, "--") || a == "--") {
        if (!starts_with(a, "-") || a == "--")
          throw fail{"unexpected argument " + quoted(a) + " (see --help)"};
        caf_args.emplace_back(a); // short option
        continue;
      }
      auto eq = a.find('=');
      auto name = a.substr(2, eq == std::string::npos ? std::string::npos
                                                      : eq - 2);
      auto d = find_def(name);
      if (d == nullptr && name != "config-file") {
        caf_args.emplace_back(a); // a CAF option, or unknown
        continue;
      }
      std::optional<std::string> value;
      if (eq != std::string::npos)
        value = a.substr(eq + 1);
      else if (i + 1 < user_args.size() && !starts_with(user_args[i + 1], "--"))
        value = user_args[++i]; // "--name value"
      else
        throw fail{"missing value for --" + name + " (use --" + name
                   + "=VALUE)"};
      if (d != nullptr) {
        flags.emplace_back(d, *value);
      } else if (value->empty()) {
        throw fail{"missing value for --config-file"};
      } else {
        config_file = *value;
      }
    }
    if (!config_file)
      if (auto value = getenv_fn("CONFIG_FILE"); value != nullptr && *value)
        config_file = value;
    // 2. INI file. CAF 0.17.6 would silently drop unknown keys and values of
    //    the wrong type (and ignore `global { ... }` blocks), so parse it
    //    untyped with CAF's parser, check every key, and store each value
    //    through its CAF option: ours, and those of CAF's own sections (also
    //    into `content`, where CAF reads them).
    if (config_file) {
      std::ifstream f{*config_file};
      if (!f)
        throw fail{"cannot read config file " + quoted(*config_file) + ": "
                   + std::strerror(errno)};
      caf::config_option_set untyped;
      caf::settings raw;
      if (auto e = parse_config(f, untyped, raw))
        throw fail{"invalid config file " + quoted(*config_file)
                   + ": syntax error ("
                   + to_string(static_cast<caf::pec>(e.code())) + ") at "
                   + error_position(e)};
      auto where = " in config file " + quoted(*config_file);
      for (auto& [key, value] : raw) {
        if (auto section = caf::get_if<caf::settings>(&value)) {
          // A CAF section such as [scheduler].
          bool known = std::any_of(
            custom_options_.begin(), custom_options_.end(),
            [&](const caf::config_option& o) { return o.category() == key; });
          if (!known || key == "global")
            throw fail{"unknown section [" + key + "]" + where};
          for (auto& [k, v] : *section) {
            auto opt = custom_options_.qualified_name_lookup(key, k);
            if (opt == nullptr)
              throw fail{"unknown setting " + key + "." + k + where};
            if (opt->check(v))
              throw fail{"invalid setting " + key + "." + k + where + ": "
                         + to_string(v) + " is not a valid "
                         + type_name(*opt)};
            opt->store(v);
            caf::put(content, key + "." + k, v);
          }
          continue;
        }
        auto d = find_def(key);
        if (d == nullptr)
          throw fail{"unknown setting " + quoted(key) + where};
        if (store(*d, value))
          continue;
        if (kind_of(*d) == kind::list)
          if (auto str = caf::get_if<std::string>(&value)) { // "a,b"
            caf::config_value::list xs;
            for (auto& x : split_list(*str))
              xs.emplace_back(x);
            if (store(*d, caf::config_value{std::move(xs)}))
              continue;
          }
        throw fail{"invalid setting " + label(*d) + where + ": "
                   + to_string(value) + " " + type_problem(kind_of(*d))};
      }
    }
    // 3. Environment, over the INI file.
    for (auto& d : defs()) {
      auto value = getenv_fn(env_name(d.name).c_str());
      if (value == nullptr || *value == '\0')
        continue;
      if (!store(d, typed_value(d, value, true)))
        throw bad_value(d, value, true);
    }
    // 4. Flags, over the environment; the last of repeated flags wins.
    for (auto& [d, value] : flags)
      if (!store(*d, typed_value(*d, value, false)))
        throw bad_value(*d, value, false);
    // 5. CAF's own options. No INI file here: CAF's sections are stored.
    std::istringstream no_ini;
    if (auto e = parse(caf_args, no_ini)) {
      auto arg = error_argument(e);
      if (e.category() == caf::atom("parser") && !arg.empty()) {
        if (static_cast<caf::pec>(e.code()) == caf::pec::not_an_option)
          throw fail{"unknown flag " + arg.substr(0, arg.find('='))
                     + " (see --help)"};
        throw fail{"invalid argument " + quoted(arg) + ": "
                   + to_string(static_cast<caf::pec>(e.code()))};
      }
      throw fail{"invalid configuration: " + render(e)};
    }
    if (!remainder.empty())
      throw fail{"unexpected argument " + quoted(remainder.front())
                 + " (see --help)"};
    if (auto problem = database_only ? validate_database_url(values)
                                     : validate(values);
        !problem.empty())
      throw fail{problem};
    if (dump) {
      for (auto& [k, v] : describe(values))
        out << k << '=' << v << '\n';
      out.flush();
      return {false, 0};
    }
    return {true, 0};
  } catch (const fail& f) {
    err << program_name << ": " << f.message << std::endl;
    return {false, 2};
  }
}

} // namespace ces
