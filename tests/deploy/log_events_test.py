#!/usr/bin/python3
"""The README's log-event table against the code.

Finds every structured log call (`log::event(level, logger, "event",
{fields})`, also `ces::log::event`, multi-line) in actors/ api/ storage/
config/ and reads its level(s), logger, event name(s) and field keys. Event
names are string literals, or `cond ? "a" : "b"` of literals; other
expressions must be listed in NON_LITERAL below (a wrapper function whose
call sites pass the names), else the test fails and names the call.

Then it reads the one table of README.md's "Logs and supervision" section
(columns: event | logger | level | fields | what to do) and fails when
  - the code emits an event the table does not list (or the table lists one
    the code no longer emits),
  - a row's logger(s), level(s) or fields differ from the code's.

  log_events_test.py SOURCE_DIR          the check (ctest deploy.log_events)
  log_events_test.py SOURCE_DIR --dump   the code's events as table rows
"""
import os
import re
import sys

SCAN_DIRS = ["actors", "api", "storage", "config"]

# Expressions the parser cannot read, by (file, argument text).
#  events: ("wrapper", name, index): the event is the index-th argument of
#          every call to `name(` in the same file (literals or ternaries);
#  loggers: the logger name as the table writes it;
#  "forward": the overload in config/logging.cpp that forwards its caller's
#             event (its callers are scanned themselves).
NON_LITERAL = {
    ("actors/jobs.cpp", "event"): ("wrapper", "log_finished", 1),
    ("actors/persister.cpp", "st.cfg.name"): "persister-N",
    ("config/logging.cpp", "event"): "forward",
}

LEVELS = {"trace": "trace", "debug": "debug", "info": "info", "warn": "warn",
          "err": "error", "critical": "critical"}


def strip_comments(text):
    """Comments become spaces (strings and char literals are kept)."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = skip_literal(text, i)
            out.append(text[i:j])
            i = j
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def skip_literal(text, i):
    """Index after the string or char literal starting at text[i]."""
    q, j = text[i], i + 1
    while j < len(text) and text[j] != q:
        j += 2 if text[j] == "\\" else 1
    return j + 1


def call_args(text, open_paren):
    """The top-level argument texts of the call whose '(' is at open_paren,
    and the index after its ')'."""
    args, depth, start, i = [], 0, open_paren + 1, open_paren
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = skip_literal(text, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append(text[start:i].strip())
                return args, i + 1
        elif c == "," and depth == 1:
            args.append(text[start:i].strip())
            start = i + 1
        i += 1
    raise ValueError("unbalanced call")


def split_ternary(expr):
    """(cond, a, b) for a top-level `cond ? a : b`, else None."""
    depth, q = 0, None
    i = 0
    while i < len(expr):
        c = expr[i]
        if c in "\"'":
            i = skip_literal(expr, i)
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif c == "?" and depth == 0 and q is None:
            q = i
        elif c == ":" and depth == 0 and q is not None:
            if expr[i - 1:i + 1] != "::" and expr[i:i + 2] != "::":
                return expr[:q], expr[q + 1:i], expr[i + 1:]
        i += 1
    return None


LITERAL = re.compile(r'^"((?:[^"\\]|\\.)*)"$')


def literal_names(expr):
    """The names an expression can take: a literal or a ternary of them;
    None when it is anything else."""
    expr = expr.strip()
    m = LITERAL.match(expr)
    if m:
        return [m.group(1)]
    t = split_ternary(expr)
    if t:
        a, b = literal_names(t[1]), literal_names(t[2])
        if a is not None and b is not None:
            return a + b
    return None


def field_keys(expr):
    """Keys of a `{{"key", value}, ...}` initializer list."""
    expr = expr.strip()
    if not expr.startswith("{"):
        return None
    inner, _ = call_args("(" + expr[1:-1] + ")", 0)
    keys = []
    for item in inner:
        if not item:
            continue
        m = re.match(r'^\{\s*"([^"]+)"\s*,', item)
        if not m:
            return None
        keys.append(m.group(1))
    return keys


CALL = re.compile(r"(?<![\w:])(?:ces::)?log::event\s*\(")
BARE = re.compile(r"(?<![\w:.>])event\s*\(\s*(?:spdlog::level|level\b)")


def scan(root):
    """{event: {"loggers", "levels", "fields", "sites"}}; raises SystemExit
    naming every call it cannot read."""
    events, problems = {}, []
    for d in SCAN_DIRS:
        for base, _, files in os.walk(os.path.join(root, d)):
            for f in sorted(files):
                if not f.endswith((".cpp", ".hpp")):
                    continue
                path = os.path.join(base, f)
                rel = os.path.relpath(path, root)
                with open(path, encoding="utf-8") as fh:
                    text = strip_comments(fh.read())
                if re.search(r"using\s+(?:ces::)?log::event\b", text):
                    problems.append(f"{rel}: `using log::event`: calls "
                                    "without log:: are not scanned")
                for m in BARE.finditer(text):
                    line = text.count("\n", 0, m.start()) + 1
                    if rel == "config/logging.cpp" or rel.endswith(".hpp"):
                        continue  # the declarations and definitions
                    problems.append(f"{rel}:{line}: an event() call without "
                                    "log::: not scanned")
                for m in CALL.finditer(text):
                    line = text.count("\n", 0, m.start()) + 1
                    site = f"{rel}:{line}"
                    args, _ = call_args(text, m.end() - 1)
                    if len(args) != 4:
                        problems.append(f"{site}: expected 4 arguments")
                        continue
                    lvl_arg, logger_arg, event_arg, fields_arg = args
                    names = literal_names(event_arg)
                    special = NON_LITERAL.get((rel, event_arg))
                    if special == "forward":
                        continue
                    if names is None and isinstance(special, tuple):
                        _, fn, idx = special
                        names = []
                        for w in re.finditer(r"(?<![\w:])" + fn + r"\s*\(",
                                             text):
                            wargs, _ = call_args(text, w.end() - 1)
                            if wargs and re.match(r"^[\w:&<>\s]+\s&?\w+$",
                                                  wargs[0]):
                                continue  # the definition
                            got = literal_names(wargs[idx])
                            if got is None:
                                problems.append(
                                    f"{site}: cannot read the event of a "
                                    f"{fn}() call: {wargs[idx]!r}")
                            else:
                                names += got
                        if not names:
                            problems.append(f"{site}: no {fn}() call found")
                    if names is None:
                        problems.append(
                            f"{site}: cannot read the event name "
                            f"{event_arg!r}: use a literal, or list it in "
                            "NON_LITERAL (tests/deploy/log_events_test.py)")
                        continue
                    logger = literal_names(logger_arg)
                    if logger is None:
                        if (rel, logger_arg) in NON_LITERAL:
                            logger = [NON_LITERAL[(rel, logger_arg)]]
                        else:
                            problems.append(
                                f"{site}: cannot read the logger "
                                f"{logger_arg!r}: list it in NON_LITERAL")
                            continue
                    levels = [LEVELS[x] for x in
                              re.findall(r"spdlog::level::(\w+)", lvl_arg)
                              if x in LEVELS]
                    if not levels:
                        problems.append(f"{site}: cannot read the level "
                                        f"{lvl_arg!r}")
                        continue
                    keys = field_keys(fields_arg)
                    if keys is None:
                        problems.append(f"{site}: cannot read the fields "
                                        f"{fields_arg[:60]!r}")
                        continue
                    for name in names:
                        e = events.setdefault(name, {
                            "loggers": set(), "levels": set(),
                            "fields": set(), "sites": []})
                        e["loggers"].update(logger)
                        e["levels"].update(levels)
                        e["fields"].update(keys)
                        e["sites"].append(site)
    if problems:
        sys.exit("log_events_test: cannot read every log call:\n  "
                 + "\n  ".join(problems))
    return events


def readme_table(root):
    """{event: {"loggers", "levels", "fields", "line"}} of the table in
    README.md's "## Logs and supervision" section."""
    with open(os.path.join(root, "README.md"), encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    try:
        start = lines.index("## Logs and supervision")
    except ValueError:
        sys.exit("log_events_test: README.md has no '## Logs and supervision'")
    end = next((i for i in range(start + 1, len(lines))
                if lines[i].startswith("## ")), len(lines))
    rows, header = {}, None
    ticks = re.compile(r"`([^`]+)`")
    for i in range(start + 1, end):
        line = lines[i]
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if header is None:
            header = [c.lower() for c in cells]
            if header[:4] != ["event", "logger", "level", "fields"]:
                sys.exit("log_events_test: the table's columns must start "
                         f"event | logger | level | fields, not {header}")
            continue
        if set(cells[0]) <= set("-: "):
            continue
        names = ticks.findall(cells[0])
        if len(names) != 1:
            sys.exit(f"log_events_test: README.md:{i + 1}: one `event` per "
                     "row")
        if names[0] in rows:
            sys.exit(f"log_events_test: README.md:{i + 1}: {names[0]} "
                     "listed twice")
        rows[names[0]] = {
            "loggers": set(ticks.findall(cells[1])),
            "levels": set(re.findall(r"[a-z]+", cells[2])),
            "fields": set(ticks.findall(cells[3])),
            "line": i + 1}
    if header is None:
        sys.exit("log_events_test: no table in README.md's 'Logs and "
                 "supervision'")
    return rows


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    events = scan(root)
    if "--dump" in sys.argv:
        for name in sorted(events, key=lambda n: (sorted(events[n]["loggers"]),
                                                  n)):
            e = events[name]
            print("| `%s` | %s | %s | %s | |" % (
                name, ", ".join(f"`{x}`" for x in sorted(e["loggers"])),
                " / ".join(sorted(e["levels"])),
                ", ".join(f"`{x}`" for x in sorted(e["fields"]))))
        return
    rows = readme_table(root)
    errors = []
    for name in sorted(set(events) - set(rows)):
        errors.append(f"`{name}` is logged ({', '.join(events[name]['sites'])})"
                      " but not in README.md's log table")
    for name in sorted(set(rows) - set(events)):
        errors.append(f"README.md:{rows[name]['line']}: `{name}` is no longer "
                      "logged by the code")
    for name in sorted(set(rows) & set(events)):
        e, r = events[name], rows[name]
        for what in ("loggers", "levels", "fields"):
            if e[what] != r[what]:
                errors.append(
                    f"README.md:{r['line']}: `{name}` {what}: code "
                    f"{sorted(e[what])}, table {sorted(r[what])} "
                    f"({', '.join(e['sites'])})")
    if errors:
        sys.exit("log_events_test: README.md's log table and the code "
                 "disagree:\n  " + "\n  ".join(errors))
    print(f"log_events_test: {len(events)} events, all in README.md's table")


if __name__ == "__main__":
    main()
