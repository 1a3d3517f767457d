#!/usr/bin/python3
"""bench/scale_client.py: the query half of bench/scale.sh.

Measures the operator API of a running crm-events-sink on one keep-alive
HTTP connection (p50/p99/max of each query, after a warm-up), then captures
the SQL the service sends for each query (log_min_duration_statement = 0 for
the capture only) and runs EXPLAIN (ANALYZE, BUFFERS) of it in psql: the
plans prove partition pruning and an index path, and give planning time.

  scale_client.py --api http://127.0.0.1:PORT --key-file F --db-url URL
                  --pg-log PATH --large T --small T --day-from TS --day-to TS
                  [--samples N] [--out DIR]

Prints one line per query ("QUERY name p50 p99 max target verdict"), the
plans (trimmed) and a final "RESULT" line of key=value pairs.
"""

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse

TOPIC = "apexflow.jobs.created"


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


class Api:
    def __init__(self, base, key):
        u = urllib.parse.urlparse(base)
        self.host, self.port = u.hostname, u.port
        self.key = key
        self.conn = None

    def request(self, method, path, body=None):
        """(status, headers, body bytes, seconds) of one request."""
        headers = {"Authorization": "Bearer " + self.key}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port,
                                                       timeout=60)
            try:
                t = time.perf_counter()
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                payload = r.read()
                dt = time.perf_counter() - t
                return r.status, dict(r.getheaders()), payload, dt
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")


def next_link(headers):
    link = headers.get("Link") or headers.get("link")
    if not link:
        return None
    m = re.match(r"\s*<([^>]+)>\s*;\s*rel=\"next\"", link)
    return m.group(1) if m else None


def measure(api, name, method, path, body, samples, warmup):
    for _ in range(warmup):
        st, _, payload, _ = api.request(method, path, body)
        if st != 200:
            sys.exit(f"scale_client: {name}: {method} {path} answered {st}: "
                     f"{payload[:300]!r}")
    lat = []
    for _ in range(samples):
        st, _, payload, dt = api.request(method, path, body)
        if st != 200:
            sys.exit(f"scale_client: {name}: {method} {path} answered {st}")
        lat.append(dt * 1000)
    return lat, payload


def walk(api, path, pages):
    """(path, n): the path of page n = `pages` (1 = `path`) of a cursor
    walk, or of its last page n when the walk ends before (a small seed)."""
    cur = path
    for n in range(1, pages):
        st, headers, payload, _ = api.request("GET", cur)
        if st != 200:
            sys.exit(f"scale_client: walk page {n}: {st} {payload[:200]!r}")
        nxt = next_link(headers)
        if nxt is None:
            return cur, n
        cur = nxt
    return cur, pages


# ---- plan capture -------------------------------------------------------------

STMT = re.compile(r"LOG:  duration: [0-9.]+ ms  (?:execute [^:]*|statement): "
                  r"(.*)$")
PARAMS = re.compile(r"DETAIL:  parameters: (.*)$")
PARAM = re.compile(r"\$(\d+) = ('(?:[^']|'')*'|NULL)")


def psql(url, sql):
    r = subprocess.run(["psql", url, "-X", "-Atq", "-v", "ON_ERROR_STOP=1",
                        "-c", sql], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return r.stdout


def psql2(url, sql):
    """The output of the second of two runs of `sql` in one session."""
    marker = "-- scale_client: second run --"
    r = subprocess.run(["psql", url, "-X", "-Atq", "-v", "ON_ERROR_STOP=1",
                        "-c", sql, "-c", f"SELECT '{marker}'", "-c", sql],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip())
    return r.stdout.split(marker + "\n", 1)[-1]


def captured(log_text):
    """The statements in a slice of the server log, with their parameters
    substituted (as literals: what the server planned them with)."""
    out = []
    lines = log_text.split("\n")
    for i, line in enumerate(lines):
        m = STMT.search(line)
        if not m:
            continue
        sql = m.group(1)
        # A statement may continue on the following lines (tab-indented or
        # not a log line).
        j = i + 1
        while j < len(lines) and lines[j] and not re.match(
                r"^\d{4}-\d\d-\d\d ", lines[j]) and "DETAIL:" not in lines[j]:
            sql += "\n" + lines[j]
            j += 1
        if j < len(lines):
            p = PARAMS.search(lines[j])
            if p:
                params = {int(k): v for k, v in PARAM.findall(p.group(1))}
                for k in sorted(params, reverse=True):
                    sql = sql.replace(f"${k}", params[k])
        if re.search(r"\bevent_(journal|dlq)\b", sql) and \
                not sql.lstrip().upper().startswith(("INSERT", "UPDATE")):
            out.append(sql)
    return out


def trim_plan(plan):
    """The lines of a plan that show the access paths, with runs of the same
    node over many partitions collapsed."""
    keep = []
    last_kind, run = None, 0
    for line in plan.split("\n"):
        s = line.strip()
        if not s:
            continue
        interesting = re.search(
            r"(Scan|Append|Limit|Subplans Removed|Planning Time|"
            r"Execution Time|Sort|Aggregate|Nested Loop|Hash|WindowAgg|"
            r"Index Cond|Filter:|Rows Removed|Buffers)", s)
        if not interesting:
            continue
        kind = re.sub(r"event_(journal|dlq)_\w+", "P", s)
        kind = re.sub(r"\(actual.*|\(never.*|[0-9]+", "", kind)
        if kind == last_kind:
            run += 1
            continue
        if run:
            keep.append(f"      ... and {run} more like it")
        last_kind, run = kind, 0
        keep.append(line.rstrip())
    if run:
        keep.append(f"      ... and {run} more like it")
    return keep


def plan_facts(plan):
    parts = set(re.findall(r" on (event_journal_\d+\w*)", plan))
    removed = sum(int(x) for x in re.findall(r"Subplans Removed: (\d+)", plan))
    never = len(re.findall(r"never executed", plan))
    planning = re.search(r"Planning Time: ([0-9.]+) ms", plan)
    execution = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    seq = [s for s in re.findall(r"Seq Scan on (\w+)", plan)]
    index = re.findall(r"(?:Index|Index Only|Bitmap Index) Scan "
                       r"(?:Backward )?(?:using|on) (\w+)", plan)
    return {
        "partitions_in_plan": len(parts),
        "subplans_removed": removed,
        "never_executed": never,
        "planning_ms": float(planning.group(1)) if planning else -1,
        "execution_ms": float(execution.group(1)) if execution else -1,
        "seq_scans": sorted({re.sub(r"^event_journal_\d{8}\w*$",
                                    "event_journal_*", x) for x in seq}),
        # One name per index of the parent: event_journal_*_tenant_id_id_idx
        "indexes": sorted({re.sub(r"^event_journal_\d{8}(_\d+)?_",
                                  "event_journal_*_", x) for x in index}),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--key-file", required=True)
    ap.add_argument("--db-url", required=True)
    ap.add_argument("--pg-log", required=True)
    ap.add_argument("--large", required=True)
    ap.add_argument("--small", required=True)
    ap.add_argument("--day-from", required=True)
    ap.add_argument("--day-to", required=True)
    ap.add_argument("--samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--walk-pages", type=int, default=200)
    ap.add_argument("--out", default=".")
    a = ap.parse_args()

    api = Api(a.api, open(a.key_file).read().strip())
    q = urllib.parse.quote
    day = f"from={q(a.day_from)}&to={q(a.day_to)}"
    queries = [
        ("events_large", "GET", f"/events?tenant_id={a.large}&limit=50",
         None, 20),
        ("events_small", "GET", f"/events?tenant_id={a.small}&limit=50",
         None, 20),
        ("events_topic", "GET",
         f"/events?tenant_id={a.large}&topic={TOPIC}&limit=50", None, 20),
        ("events_day", "GET", f"/events?tenant_id={a.large}&{day}&limit=50",
         None, 20),
        ("events_page200", "GET", None, None, 20),
        ("replay_dry_run", "POST", "/replays",
         {"filter": {"tenant_id": a.large, "from": a.day_from,
                     "to": a.day_to}, "dry_run": True,
          "max_events": 1000000}, 1000),
        ("dlq_status_class_tenant", "GET",
         f"/dlq?status=discarded&error_class=invalid_json"
         f"&tenant_id={a.large}&limit=50", None, 20),
        ("dlq_status_class_small", "GET",
         f"/dlq?status=resolved&error_class=invalid_json"
         f"&tenant_id={a.small}&limit=50", None, 20),
        ("dlq_status_class", "GET",
         "/dlq?status=failed&error_class=db_rejected&limit=50", None, 20),
        ("dlq_pending", "GET", "/dlq?status=pending&limit=50", None, 20),
    ]
    t = time.perf_counter()
    page200, reached = walk(api, queries[0][2], a.walk_pages)
    walk_s = time.perf_counter() - t
    if reached < a.walk_pages:
        print(f"scale_client: the walk ended at page {reached}: "
              f"events_page200 measures page {reached}")
    queries = [(n, m, page200 if n == "events_page200" else p, b, tg)
               for n, m, p, b, tg in queries]

    results = {}
    print(f"scale_client: {a.samples} samples per query after {a.warmup} "
          f"warm-up, one keep-alive connection; walk to page "
          f"{a.walk_pages} took {walk_s:.1f}s")
    print(f"{'query':<26} {'p50_ms':>8} {'p99_ms':>8} {'max_ms':>8} "
          f"{'target':>7}  verdict  rows")
    for name, method, path, body, target in queries:
        samples = a.samples
        lat, payload = measure(api, name, method, path, body, samples,
                               a.warmup)
        try:
            doc = json.loads(payload)
            rows = (len(doc) if isinstance(doc, list) else
                    doc.get("matched", len(doc.get("events", doc.get(
                        "entries", []))) if isinstance(doc, dict) else "?"))
        except ValueError:
            rows = "?"
        p50, p99, mx = pct(lat, .5), pct(lat, .99), max(lat)
        ok = p99 <= target
        results[name] = (p50, p99, mx, target, ok, rows)
        print(f"{name:<26} {p50:8.2f} {p99:8.2f} {mx:8.2f} {target:>5}ms  "
              f"{'PASS' if ok else 'FAIL':<7}  {rows}", flush=True)

    # ---- plans ----
    psql(a.db_url, "ALTER SYSTEM SET log_min_duration_statement = 0")
    psql(a.db_url, "SELECT pg_reload_conf()")
    time.sleep(1)
    stmts = {}
    try:
        for name, method, path, body, _ in queries:
            before = os.path.getsize(a.pg_log)
            api.request(method, path, body)
            time.sleep(0.5)
            with open(a.pg_log, errors="replace") as fh:
                fh.seek(before)
                stmts[name] = captured(fh.read())
    finally:
        psql(a.db_url, "ALTER SYSTEM RESET log_min_duration_statement")
        psql(a.db_url, "SELECT pg_reload_conf()")

    facts_all = {}
    os.makedirs(a.out, exist_ok=True)
    print("\nEXPLAIN (ANALYZE, BUFFERS) of each query's SQL as the service "
          "sent it (second run; trimmed; full plans in "
          f"{a.out}/plans.txt)")
    with open(os.path.join(a.out, "plans.txt"), "w") as full:
        for name, _, _, _, _ in queries:
            for k, sql in enumerate(stmts.get(name, [])):
                ex = "EXPLAIN (ANALYZE, BUFFERS) " + sql
                try:
                    # Twice in one session, the second plan kept: the
                    # service's session has the catalog cached (a first
                    # plan in a new session reads every partition's
                    # catalog entries).
                    plan = psql2(a.db_url, ex)
                except RuntimeError as e:
                    print(f"\n-- {name}: EXPLAIN failed: {e}")
                    continue
                f = plan_facts(plan)
                facts_all[f"{name}#{k}"] = f
                full.write(f"-- {name} #{k}\n{sql}\n{plan}\n\n")
                print(f"\n-- {name} #{k}: planning {f['planning_ms']} ms, "
                      f"execution {f['execution_ms']} ms, partitions in plan "
                      f"{f['partitions_in_plan']}, subplans removed "
                      f"{f['subplans_removed']}, never executed "
                      f"{f['never_executed']}, indexes "
                      f"{','.join(f['indexes']) or '-'}, seq scans "
                      f"{','.join(f['seq_scans']) or '-'}")
                print("   " + sql[:400] + (" ..." if len(sql) > 400 else ""))
                for line in trim_plan(plan):
                    print("   " + line)
    with open(os.path.join(a.out, "facts.json"), "w") as fh:
        json.dump({"latency": results, "plans": facts_all}, fh, indent=1)

    kv = []
    for name, (p50, p99, mx, target, ok, rows) in results.items():
        kv.append(f"{name}_p99_ms={p99:.2f}")
    planning = [f["planning_ms"] for k, f in facts_all.items()
                if k.startswith("events_")]
    if planning:
        kv.append(f"events_planning_ms_max={max(planning):.2f}")
    seqs = sorted({s for f in facts_all.values() for s in f["seq_scans"]
                   if s.startswith("event_")})
    kv.append(f"seq_scans={','.join(seqs) or 'none'}")
    kv.append(f"all_pass={int(all(r[4] for r in results.values()))}")
    print("\nRESULT " + " ".join(kv))


if __name__ == "__main__":
    main()
