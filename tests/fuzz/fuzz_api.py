#!/usr/bin/python3
"""The operator API fuzzed from its own OpenAPI document with schemathesis.

Starts a throwaway PostgreSQL (scripts/pg-tmp.sh), crm-mock-broker and
crm-events-sink on free ports, produces traffic with crm-produce (poison
records among it, so there are events and dead letters), makes a replay job
and a scoped key (role operator, tenants tenant-01 and tenant-02, made with
POST /keys), then runs schemathesis (`st run`) against the live service's
GET /openapi.json with every check on:
  1. `admin`: as the admin key (phases examples, coverage, fuzzing);
  2. `scoped`: as the scoped key (the same phases): its 403s and 404s must
     be documented too;
  3. `stateful`: as the admin key, the stateful phase (at least 30
     scenarios): chains that follow the document's OpenAPI links, create
     -> read -> cancel for jobs and create -> list -> revoke for keys, and
     the Location headers.
Any failure of a check (a 5xx, a status, content type, header or body the
document does not allow, a request left unanswered within
--request-timeout, ...) fails the run; the reports (JUnit, NDJSON) and the
service's log stay in the work directory, whose path is printed.

  fuzz_api.py --st PATH/TO/st --source SRC --build BUILD [--examples N]
              [--seed S] [--keep] [--runs admin,scoped,stateful]
              [--phases LIST]

Exit 0 when every run is clean, 1 when schemathesis found a failure, 2 on a
setup error.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

procs = []  # (name, Popen), stopped in reverse order


def log(msg):
    print(f"fuzz-api: {msg}", flush=True)


class SetupError(Exception):
    pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url, headers=None, timeout=10, data=None, method=None):
    """(status, headers, body) of a request; status 0 when nothing
    answers."""
    req = urllib.request.Request(
        url, headers=dict(headers or {}, **(
            {"Content-Type": "application/json"} if data else {})),
        data=data.encode() if data is not None else None,
        method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, {}, ""


def start(name, argv, out):
    log(f"starting {name}")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL)
    procs.append((name, p))
    return p


def wait_for(what, cond, timeout, proc=None, logfile=None):
    """Polls cond() until it holds (returns at once then) or `timeout`
    seconds passed: generous bounds for a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        if proc is not None and proc.poll() is not None:
            tail = ""
            if logfile:
                with open(logfile, errors="replace") as f:
                    tail = "".join(f.readlines()[-15:])
            raise SetupError(f"{what}: the process exited "
                             f"({proc.returncode}):\n{tail}")
        time.sleep(0.2)
    raise SetupError(f"{what}: not within {timeout} s")


def stop_all():
    for name, p in reversed(procs):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log(f"{name} ignored SIGTERM: killed")
                p.kill()
                p.wait()
    procs.clear()


def new_key():
    return "ces_" + base64.urlsafe_b64encode(os.urandom(32)).decode() \
        .rstrip("=")


def st_run(args, api, name, auth_header, phases, examples, work):
    """One `st run`; returns its exit status."""
    report = os.path.join(work, f"st-{name}")
    argv = [
        args.st, "--config-file",
        os.path.join(args.source, "tests", "fuzz", "schemathesis.toml"),
        # The document of the source tree (GET /openapi.json serves the
        # same, built in): a fix to it is fuzzed without a rebuild.
        "run", os.path.join(args.source, "api", "openapi.yaml"), "--url", api,
        "--checks", "all",
        "--phases", phases,
        "--max-examples", str(examples),
        "--header", f"Authorization: {auth_header}",
        "--request-timeout", str(args.request_timeout),
        "--workers", "1",
        "--generation-database", "none",
        "--report", "junit,ndjson", "--report-dir", report,
        "--no-color",
        # The secret stays out of the output and the reports.
        "--output-sanitize", "true",
    ]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    log(f"schemathesis run `{name}`: phases {phases}, {examples} "
        f"examples per operation (reports in {report})")
    t0 = time.monotonic()
    rc = subprocess.call(argv, stdin=subprocess.DEVNULL, cwd=work)
    log(f"schemathesis run `{name}`: exit {rc} after "
        f"{time.monotonic() - t0:.0f} s")
    return rc


def main():
    # A SIGTERM (CI cancel, timeout) ends through the finally blocks below,
    # which stop PostgreSQL, the broker and the service.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--st", required=True, help="schemathesis's st binary")
    ap.add_argument("--source", required=True)
    ap.add_argument("--build", required=True)
    ap.add_argument("--examples", type=int, default=20)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--request-timeout", type=float, default=30)
    ap.add_argument("--runs", default="admin,scoped,stateful")
    ap.add_argument("--phases", help="only these schemathesis phases "
                    "(default: examples,coverage,fuzzing for admin and "
                    "scoped, stateful for stateful)")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory on success too")
    args = ap.parse_args()
    args.source = os.path.abspath(args.source)
    src, build = args.source, os.path.abspath(args.build)
    sink_bin = os.path.join(build, "actors", "crm-events-sink")
    broker_bin = os.path.join(build, "tests", "tools", "crm-mock-broker")
    produce_bin = os.path.join(build, "tests", "tools", "crm-produce")
    for path in (sink_bin, broker_bin, produce_bin):
        if not os.access(path, os.X_OK):
            log(f"{path} is not built (build crm-events-sink crm-mock-broker "
                "crm-produce)")
            return 2

    work = tempfile.mkdtemp(prefix="ces-fuzz-")
    os.chmod(work, 0o755)  # PostgreSQL runs as nobody under root
    pg_dir = os.path.join(work, "pg")
    pg_started = False
    rc = 2
    try:
        url = subprocess.run(
            [os.path.join(src, "scripts", "pg-tmp.sh"), "start", pg_dir],
            check=True, capture_output=True, text=True).stdout.strip()
        pg_started = True
        log(f"PostgreSQL at {url}")

        bs_file = os.path.join(work, "bootstrap")
        broker_log = os.path.join(work, "broker.log")
        broker = start("crm-mock-broker", [
            broker_bin, "--partitions", "4", "--bootstrap-file", bs_file],
            open(broker_log, "w"))
        wait_for("crm-mock-broker", lambda: os.path.exists(bs_file), 60,
                 broker, broker_log)
        with open(bs_file) as f:
            bootstrap = f.read().strip().split("=", 1)[1]

        admin_key = new_key()
        key_file = os.path.join(work, "admin.key")
        with open(key_file, "w") as f:
            f.write(admin_key + "\n")
        os.chmod(key_file, 0o600)
        mport, hport = free_port(), free_port()
        while hport == mport:
            hport = free_port()
        sink_log = os.path.join(work, "sink.log")
        sink = start("crm-events-sink", [
            sink_bin, f"--kafka-bootstrap-servers={bootstrap}",
            "--kafka-group-id=fuzz", f"--database-url={url}",
            "--metrics-address=127.0.0.1", f"--metrics-port={mport}",
            "--http-address=127.0.0.1", f"--http-port={hport}",
            f"--admin-token-file={key_file}",
            # The fuzzer sends many unauthenticated requests (check
            # ignored_auth) and replays: budgets that do not turn its
            # answers into 429s (429 is documented; it would only hide
            # the route's own answers).
            "--auth-failures-per-minute=1000000",
            "--auth-failures-burst=1000000",
            "--replay-rate-per-tenant=100000",
            "--replay-burst-per-tenant=100000"],
            open(sink_log, "w"))
        api = f"http://127.0.0.1:{hport}"
        wait_for("crm-events-sink /ready",
                 lambda: http(api + "/ready")[0] == 200, 180, sink, sink_log)

        # Events of 4 tenants, every 10th a poison record (dead letters
        # of every error class crm-produce makes).
        produce = subprocess.run([
            produce_bin, "--bootstrap", bootstrap, "--count", "300",
            "--tenants", "4", "--poison-every", "10", "--quiet"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=300)
        if produce.returncode != 0:
            raise SetupError(f"crm-produce: exit {produce.returncode}: "
                             f"{produce.stderr[-500:]}")
        auth = {"Authorization": f"Bearer {admin_key}"}

        def count(path):
            status, _, body = http(api + path, auth)
            return len(json.loads(body)) if status == 200 else 0
        wait_for("events journalled", lambda: count(
            "/events?limit=1000") >= 200, 180, sink, sink_log)
        wait_for("dead letters", lambda: count("/dlq?limit=1000") >= 20, 180,
                 sink, sink_log)
        # A replay and a bulk replay job (finished by the time the fuzzer
        # reads it), so GET /jobs has rows.
        status, _, body = http(api + "/events/latest?limit=1", auth)
        event = json.loads(body)[0]
        status, _, body = http(f"{api}/replay/{event['id']}", auth, data="")
        if status != 200:
            raise SetupError(f"POST /replay/{event['id']}: {status} {body}")
        status, _, body = http(api + "/replays", auth, data=json.dumps(
            {"filter": {"tenant_id": "tenant-01"}, "max_events": 1000}))
        if status != 202:
            raise SetupError(f"POST /replays: {status} {body}")
        job = json.loads(body)["job_id"]
        wait_for(f"job {job} finished", lambda: json.loads(
            http(f"{api}/jobs/{job}", auth)[2] or "{}").get("status")
            in ("succeeded", "failed", "cancelled"), 180, sink, sink_log)

        # The scoped key: an operator of two tenants (no admin routes, no
        # other tenant's rows).
        status, _, body = http(api + "/keys", auth, data=json.dumps(
            {"name": "fuzz-scoped-operator-key", "role": "operator",
             "tenants": ["tenant-01", "tenant-02"]}))
        if status != 201:
            raise SetupError(f"POST /keys: {status} {body}")
        scoped_key = json.loads(body)["key"]

        runs = {
            "admin": (f"Bearer {admin_key}", "examples,coverage,fuzzing"),
            "scoped": (f"Bearer {scoped_key}", "examples,coverage,fuzzing"),
            "stateful": (f"Bearer {admin_key}", "stateful"),
        }
        failed = []
        for name in args.runs.split(","):
            if name not in runs:
                raise SetupError(f"unknown run {name!r} (admin, scoped, "
                                 "stateful)")
            header, phases = runs[name]
            phases = args.phases or phases
            # A scenario is a chain of linked calls: a few dozen of them
            # reach every link.
            examples = max(args.examples, 30) if phases == "stateful" \
                else args.examples
            if st_run(args, api, name, header, phases, examples,
                      work) != 0:
                failed.append(name)
            if sink.poll() is not None:
                raise SetupError(f"crm-events-sink exited "
                                 f"({sink.returncode}) during run {name}")
        # Still serving after the fuzzing (no crash, no stuck server).
        if http(api + "/health")[0] != 200:
            failed.append("health after the runs")
        rc = 1 if failed else 0
        log("clean: no check failed" if not failed
            else f"FAILED: {', '.join(failed)} (reports and sink.log in "
                 f"{work})")
    except (SetupError, subprocess.SubprocessError, OSError,
            ValueError, KeyError, IndexError) as e:
        log(f"setup error: {e}")
        rc = 2
    finally:
        stop_all()
        if pg_started:
            subprocess.run([os.path.join(src, "scripts", "pg-tmp.sh"), "stop",
                            pg_dir], capture_output=True)
        if rc == 0 and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"work directory kept: {work}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
