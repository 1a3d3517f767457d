#!/usr/bin/python3
"""The Grafana dashboard against a real Prometheus scraping a real service.

Starts a throwaway PostgreSQL (scripts/pg-tmp.sh), crm-mock-broker and
crm-events-sink on free ports, produces traffic with crm-produce (a few
poison records among them) and some operator API requests, then starts
Debian's `prometheus` with a temporary config: the service scraped every
second and deploy/prometheus/alerts.yml loaded. After a few scrapes it
checks that
  - every alert rule loaded and evaluates without error,
  - every metric a panel (or a template variable) names is one the service
    exposes on /metrics,
  - every panel target's expr, with the dashboard variables substituted
    ($instance, $__rate_interval -> 15s, ...), is accepted by
    /api/v1/query, and the core panels (CORE below) return data.

  dashboard_test.py SOURCE_DIR BUILD_DIR
Exit 0 when all holds; a message naming each failing panel otherwise.
"""
import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

# Panel titles that must return data under traffic (others may legitimately
# be empty: no restart, no replay, no job, no webhook in this run).
CORE = [
    "Ingest and persist rate by topic",
    "Consumer lag by partition",
    "Event age at commit p50/p99",
    "Batch commit time p50/p99",
    "Resident memory",
    "CPU",
    "HTTP requests by route and code",
]
# What Grafana would put in for its variables ($instance: the instance
# Prometheus labels the service with).
RATE_INTERVAL = "15s"
# Metrics a panel may name although this run does not make them appear (a
# family without a series is not exposed); each must be declared in
# api/metrics.cpp.
ABSENT_OK = {
    "crm_dlq_retries_total":
        "counted by the automatic retry of db_rejected dead letters only",
}
SCRAPE_WAIT_S = 20  # > RATE_INTERVAL: every rate() sees several samples

SRC, BUILD = (os.path.abspath(a) for a in sys.argv[1:3])
SINK = os.path.join(BUILD, "actors", "crm-events-sink")
BROKER = os.path.join(BUILD, "tests", "tools", "crm-mock-broker")
PRODUCE = os.path.join(BUILD, "tests", "tools", "crm-produce")
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = os.path.join(SRC, "deploy", "grafana", "crm-events-sink.json")
ALERTS = os.path.join(SRC, "deploy", "prometheus", "alerts.yml")

procs = []  # (name, Popen), stopped in reverse order


def log(msg):
    print(f"dashboard_test: {msg}", flush=True)


def fail(msg):
    raise SystemExit(f"dashboard_test: FAIL: {msg}")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, headers=None, timeout=5, data=None):
    """(status, body) of a GET (a POST with data); status 0 when nothing
    answers."""
    req = urllib.request.Request(
        url, headers=dict(headers or {}, **(
            {"Content-Type": "application/json"} if data else {})),
        data=data.encode() if data else None,
        method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def start(name, argv, out):
    log(f"starting {name}")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    procs.append((name, p))
    return p


def wait_for(what, cond, timeout, proc=None, logfile=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            tail = ""
            if logfile:
                with open(logfile, errors="replace") as f:
                    tail = "".join(f.readlines()[-15:])
            fail(f"{what}: the process exited ({proc.returncode}):\n{tail}")
        time.sleep(0.2)
    fail(f"{what}: not within {timeout} s")


def stop_all():
    for name, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                log(f"{name} ignored SIGTERM: killed")
                p.kill()
                p.wait()


def metric_names(text):
    """Sample names of a Prometheus text exposition."""
    names = set()
    for line in text.splitlines():
        if line and not line.startswith("#"):
            names.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    return names


def panels_of(dash):
    for p in dash["panels"]:
        yield p
        yield from p.get("panels", [])


def regex_literal(value):
    """value as a regex inside a PromQL string (as Grafana escapes it)."""
    return re.escape(value).replace("\\", "\\\\")


def substitute(expr, instance):
    out = (expr.replace("$__rate_interval", RATE_INTERVAL)
           .replace("${__rate_interval}", RATE_INTERVAL)
           .replace("$__interval", "5s").replace("$__range", "1m")
           .replace("${instance}", regex_literal(instance))
           .replace("$instance", regex_literal(instance)))
    if "$" in out:
        fail(f"an unknown variable in {expr!r}")
    return out


# Names in PromQL that are not metrics: functions, keywords, aggregations.
def expr_metrics(expr):
    no_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    no_labels = re.sub(r"\{[^}]*\}", "", no_strings)
    no_ranges = re.sub(r"\[[^\]]*\]", "", no_labels)
    no_groupings = re.sub(r"\b(by|without|on|ignoring|group_left|"
                          r"group_right)\s*\([^)]*\)", "", no_ranges)
    out = set()
    for m in re.finditer(r"(?<![\w:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\(?)",
                         no_groupings):
        name, call = m.group(1), m.group(2)
        if call or name in ("and", "or", "unless", "bool", "offset"):
            continue
        out.add(name)
    return out


def main():
    for path in (SINK, BROKER, PRODUCE):
        if not os.access(path, os.X_OK):
            fail(f"{path} is not built (build crm-events-sink crm-mock-broker "
                 "crm-produce)")
    with open(DASHBOARD) as f:
        dash = json.load(f)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    if variables.get("datasource", {}).get("type") != "datasource" \
            or variables.get("instance", {}).get("type") != "query":
        fail("the dashboard needs a `datasource` (data source) and an "
             "`instance` (query) variable")
    for p in panels_of(dash):
        if p["type"] != "row" and p.get("datasource", {}).get("uid") \
                != "${datasource}":
            fail(f"panel {p['title']!r} does not use the ${{datasource}} "
                 "variable")
    titles = [p.get("title") for p in panels_of(dash)]
    for t in CORE:
        if t not in titles:
            fail(f"the core panel {t!r} is not in the dashboard")

    work = tempfile.mkdtemp(prefix="ces-dashboard-")
    os.chmod(work, 0o755)  # PostgreSQL runs as nobody under root
    pg_dir = os.path.join(work, "pg")
    ok = False
    try:
        url = subprocess.run(
            [os.path.join(SRC, "scripts", "pg-tmp.sh"), "start", pg_dir],
            check=True, capture_output=True, text=True).stdout.strip()
        log(f"PostgreSQL at {url}")

        bs_file = os.path.join(work, "bootstrap")
        broker_log = os.path.join(work, "broker.log")
        broker = start("crm-mock-broker", [
            BROKER, "--partitions", "4", "--bootstrap-file", bs_file],
            open(broker_log, "w"))
        wait_for("crm-mock-broker", lambda: os.path.exists(bs_file), 30,
                 broker, broker_log)
        with open(bs_file) as f:
            bootstrap = f.read().strip().split("=", 1)[1]

        key = "ces_" + base64.urlsafe_b64encode(os.urandom(32)).decode() \
            .rstrip("=")
        key_file = os.path.join(work, "admin.key")
        with open(key_file, "w") as f:
            f.write(key + "\n")
        os.chmod(key_file, 0o600)
        # The DLQ alert webhook (tests/tools/webhook_receiver.py): a
        # threshold alert on the first dead letter, delivered.
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        hook_port_file = os.path.join(work, "hook.port")
        start("webhook_receiver", [
            "/usr/bin/python3",
            os.path.join(SRC, "tests", "tools", "webhook_receiver.py"),
            "--port-file", hook_port_file,
            "--log", os.path.join(work, "hook.jsonl"), "--secret", secret],
            open(os.path.join(work, "hook.log"), "w"))
        wait_for("webhook_receiver", lambda: os.path.exists(hook_port_file)
                 and open(hook_port_file).read().strip(), 30)
        with open(hook_port_file) as f:
            hook = f"http://127.0.0.1:{f.read().strip()}/hook"
        mport, hport = free_port(), free_port()
        while hport == mport:
            hport = free_port()
        sink_log = os.path.join(work, "sink.log")
        sink = start("crm-events-sink", [
            SINK, f"--kafka-bootstrap-servers={bootstrap}",
            "--kafka-group-id=dashboard-test", f"--database-url={url}",
            "--metrics-address=127.0.0.1", f"--metrics-port={mport}",
            "--http-address=127.0.0.1", f"--http-port={hport}",
            f"--admin-token-file={key_file}",
            f"--dlq-webhook-url={hook}", f"--dlq-webhook-secret={secret}",
            "--dlq-alert-threshold=1", "--dlq-alert-interval-ms=500"],
            open(sink_log, "w"))
        api = f"http://127.0.0.1:{hport}"
        wait_for("crm-events-sink /ready",
                 lambda: http(api + "/ready")[0] == 200, 90, sink, sink_log)

        # Traffic for the whole test: 40 events/s, every 25th a poison
        # record (dead letters by error class).
        start("crm-produce", [
            PRODUCE, "--bootstrap", bootstrap, "--count", "0", "--rate", "40",
            "--poison-every", "25", "--quiet"],
            open(os.path.join(work, "produce.log"), "w"))
        metrics_url = f"http://127.0.0.1:{mport}/metrics"

        def persisted():
            _, text = http(metrics_url)
            return sum(float(l.split()[-1]) for l in text.splitlines()
                       if l.startswith("crm_events_persisted_total{"))
        wait_for("events persisted", lambda: persisted() > 0, 60, sink,
                 sink_log)

        # The operator API: answers by route and code (200, 401, 404), a
        # replay, a bulk replay job, a refused DLQ retry.
        auth = {"Authorization": f"Bearer {key}"}
        status, body = http(api + "/events/latest?limit=1", auth)
        if status != 200 or not json.loads(body):
            fail(f"GET /events/latest: {status} {body[:200]}")
        event = json.loads(body)[0]
        status, body = http(f"{api}/replay/{event['id']}", auth, data="")
        log(f"POST /replay/{event['id']}: {status}")
        status, body = http(api + "/replays", auth, data=json.dumps(
            {"filter": {"key": event["key"]}}))
        log(f"POST /replays: {status} {body[:120]}")
        if status >= 300:
            fail(f"POST /replays: {status} {body[:200]}")
        job = json.loads(body)["job_id"]
        wait_for(f"job {job} finished", lambda: json.loads(
            http(f"{api}/jobs/{job}", auth)[1] or "{}").get("status")
            in ("succeeded", "failed", "cancelled"), 60, sink, sink_log)
        wait_for("a dead letter", lambda: json.loads(
            http(api + "/dlq?limit=1", auth)[1] or "[]"), 60, sink, sink_log)
        dead = json.loads(http(api + "/dlq?limit=1", auth)[1])[0]
        status, body = http(f"{api}/dlq/{dead['id']}/retry", auth, data="")
        log(f"POST /dlq/{dead['id']}/retry: {status}")
        for _ in range(3):
            for path, h in (("/health", None), ("/events/latest?limit=5", auth),
                            ("/events/latest", None), ("/dlq?limit=5", auth),
                            ("/events/999999999", auth)):
                http(api + path, h)

        prom_port = free_port()
        prom_dir = os.path.join(work, "prometheus")
        os.makedirs(prom_dir)
        instance = f"127.0.0.1:{mport}"
        cfg = os.path.join(prom_dir, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {ALERTS}
scrape_configs:
  - job_name: crm-events-sink
    static_configs:
      - targets: ['{instance}']
""")
        prom_log = os.path.join(work, "prometheus.log")
        prom = start("prometheus", [
            PROMETHEUS, f"--config.file={cfg}",
            f"--storage.tsdb.path={os.path.join(prom_dir, 'data')}",
            f"--web.listen-address=127.0.0.1:{prom_port}"],
            open(prom_log, "w"))
        papi = f"http://127.0.0.1:{prom_port}"
        wait_for("prometheus /-/ready", lambda: http(papi + "/-/ready")[0]
                 == 200, 60, prom, prom_log)

        def query(expr):
            status, body = http(papi + "/api/v1/query?" + urllib.parse.urlencode(
                {"query": expr}), timeout=15)
            try:
                return status, json.loads(body)
            except ValueError:
                return status, {"status": "error", "error": body[:200]}

        wait_for("the first scrape",
                 lambda: query(f'up{{instance="{instance}"}} == 1')[1]
                 .get("data", {}).get("result"), 30, prom, prom_log)
        log(f"scraping {instance}; waiting {SCRAPE_WAIT_S} s")
        time.sleep(SCRAPE_WAIT_S)
        for _ in range(3):  # HTTP traffic inside the rate window too
            http(api + "/events/latest?limit=1", auth)
            http(api + "/events/latest")
        time.sleep(3)  # scraped before the queries

        errors = []
        # The alert rules: all loaded, all evaluated without error.
        import yaml  # python3-yaml (Debian)
        with open(ALERTS) as f:
            want = [r["alert"] for g in yaml.safe_load(f)["groups"]
                    for r in g["rules"]]
        _, rules = http(papi + "/api/v1/rules")
        got = {r["name"]: r for g in json.loads(rules)["data"]["groups"]
               for r in g["rules"]}
        for name in want:
            if name not in got:
                errors.append(f"alert {name} is not loaded by prometheus")
            elif got[name].get("health") != "ok":
                errors.append(f"alert {name}: health {got[name].get('health')}"
                              f" {got[name].get('lastError', '')}")

        _, text = http(metrics_url)
        exposed = metric_names(text)
        with open(os.path.join(SRC, "api", "metrics.cpp")) as f:
            declared = set(re.findall(r'\.Name\("(\w+)"\)', f.read()))
        checked = 0
        variables = [v.get("definition", "") for v in
                     dash.get("templating", {}).get("list", [])]
        for v in variables:
            for m in re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)", v):
                if m not in exposed:
                    errors.append(f"variable query {v!r}: the service does "
                                  f"not expose {m}")
        for p in panels_of(dash):
            for t in p.get("targets", []):
                expr = t.get("expr")
                if not expr:
                    continue
                checked += 1
                where = f"panel {p['title']!r} target {t.get('refId')}"
                for m in sorted(expr_metrics(expr) - exposed):
                    if m in ABSENT_OK and m in declared:
                        log(f"{where}: {m} absent ({ABSENT_OK[m]})")
                    else:
                        errors.append(f"{where}: the service does not "
                                      f"expose {m}")
                status, res = query(substitute(expr, instance))
                if res.get("status") != "success":
                    errors.append(f"{where}: {res.get('error')} ({expr})")
                    continue
                result = res["data"]["result"]
                has_data = any(r["value"][1] not in ("NaN", "+Inf", "-Inf")
                               for r in result)
                if p["title"] in CORE and not has_data:
                    errors.append(f"{where}: no data ({expr})")
                log(f"{'ok  ' if has_data else 'empty'} {where}: "
                    f"{len(result)} series")
        if errors:
            fail("\n  " + "\n  ".join(errors))
        log(f"{checked} panel queries parse, the {len(CORE)} core panels "
            f"return data, {len(want)} alert rules loaded and healthy")
        ok = True
    finally:
        stop_all()
        subprocess.run([os.path.join(SRC, "scripts", "pg-tmp.sh"), "stop",
                        pg_dir], capture_output=True)
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"logs kept in {work}")


if __name__ == "__main__":
    main()
