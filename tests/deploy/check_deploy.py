#!/usr/bin/python3
"""Checks deploy/compose.yaml and deploy/kubernetes/ against the service.

  check_deploy.py --repo DIR --binary PATH compose|kubernetes|selftest

The service's settings (environment names, defaults) and version come from
the built binary itself (`--help`, `--version`), never from a copy here.
`compose` also runs `podman-compose --dry-run build` (podman-compose 1.0.3
has no `config` command; `build` parses and interpolates the whole file and
prints the `podman build` line it would run, without side effects) and
`promtool check config`. `selftest` mutates in-memory copies of the files
and proves that every check fails on the fault it is there for.

Debian's /usr/bin/python3 with python3-yaml; no network.
"""

import argparse
import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

import yaml

# bench/README.md: the highest peak RSS measured (1 000 000-event backlog,
# "Results and tuning history"). The memory request must cover it.
MEASURED_PEAK_RSS_MIB = 136
SINK = "crm-events-sink"
KAFKA_TOOLS = "/opt/kafka/bin/kafka-topics.sh"
SECRET_WORDS = re.compile(r"PASSWORD|SECRET|TOKEN|(^|_)KEY($|_)")


# ---- the service, from its binary ---------------------------------------

class Service:
  """Settings parsed from `--help`: env name -> (flag name, default)."""

  def __init__(self, binary):
    text = subprocess.run([binary, "--help"], check=True, capture_output=True,
                          text=True).stdout
    self.settings = {}
    current = None
    for line in text.splitlines():
      m = re.match(r"^  --([a-z0-9-]+)=\S+\s+([A-Z0-9_]+)$", line)
      if m:
        current = m.group(2)
        self.settings[current] = [m.group(1), None, ""]
        continue
      if current and line.startswith("      "):
        self.settings[current][2] += " " + line.strip()
      else:
        current = None
    for env, entry in self.settings.items():
      d = re.search(r"\((default: (.*)|required)\)$", entry[2])
      if not d:
        raise SystemExit("cannot read the default of %s from --help" % env)
      entry[1] = d.group(2)  # None when required
    # CONFIG_FILE is an environment name too (--help's "Other").
    self.settings["CONFIG_FILE"] = ["config-file", "none", ""]
    for must in ("HTTP_PORT", "METRICS_PORT", "SHUTDOWN_TIMEOUT_MS",
                 "KAFKA_TOPICS", "PERSISTER_CONNECTIONS"):
      if must not in self.settings:
        raise SystemExit("--help does not list %s: parser out of date" % must)
    v = subprocess.run([binary, "--version"], check=True,
                       capture_output=True, text=True).stdout
    m = re.match(r"^crm-events-sink (\S+) ", v)
    if not m:
      raise SystemExit("cannot read the version from --version: %r" % v)
    self.version = m.group(1)

  def default(self, env):
    return self.settings[env][1]

  def effective(self, env, overrides):
    return overrides.get(env, self.default(env))


def worst_stop_s(shutdown_timeout_ms):
  """The longest graceful stop of actors/main.cpp: HTTP drain <= T/2,
  supervisor stop <= T + 3 s, actor teardown <= T."""
  t = shutdown_timeout_ms / 1000.0
  return 2.5 * t + 3


def duration_s(text):
  m = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", str(text))
  if not m or not any(m.groups()):
    return None
  return int(m.group(1) or 0) * 60 + float(m.group(2) or 0)


def mib(quantity):
  units = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024, "K": 1e3 / 2**20,
           "M": 1e6 / 2**20, "G": 1e9 / 2**20}
  m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMG]i?)?", str(quantity))
  if not m:
    return None
  return float(m.group(1)) * (units[m.group(2)] if m.group(2) else 2**-20)


# ---- compose ---------------------------------------------------------------

def interpolate(value):
  """Compose interpolation with every variable unset: ${X:-d} -> d."""
  if not isinstance(value, str):
    return value
  value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:?-([^}]*)\}", r"\1", value)
  value = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}", "", value)
  return value.replace("$$", "$")


def env_of(svc):
  env = svc.get("environment") or {}
  if isinstance(env, list):
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
  return {k: interpolate(str(v)) for k, v in env.items()}


def cmd_text(svc, key):
  c = svc.get(key)
  if c is None:
    return ""
  return " ".join(c) if isinstance(c, list) else str(c)


def binds(svc):
  """(host path as written, container path) of the bind mounts."""
  out = []
  for v in svc.get("volumes") or []:
    if isinstance(v, dict):
      if v.get("type") == "bind":
        out.append((interpolate(v["source"]), v["target"]))
      continue
    parts = interpolate(v).split(":")
    if len(parts) >= 2 and parts[0].startswith((".", "/")):
      out.append((parts[0], parts[1]))
  return out


def host_path(compose_dir, p):
  return os.path.normpath(os.path.join(compose_dir, p))


def image_tag(image):
  name = image.rsplit("/", 1)[-1]
  return name.split(":", 1)[1] if ":" in name else ""


def check_compose(model, svc_info, fail):
  c = model["compose"]
  cdir = model["compose_dir"]
  repo = model["repo"]
  services = c.get("services") or {}
  for name in (SINK, "postgres", "kafka", "kafka-init", "prometheus",
               "grafana", "sample"):
    if name not in services:
      fail("compose.services", "no service %s" % name)
  if any(n not in services for n in (SINK, "kafka", "kafka-init",
                                     "prometheus", "grafana", "postgres",
                                     "sample")):
    return
  sink = services[SINK]
  env = env_of(sink)

  # Every variable set on the sink is a setting of the service.
  for k in env:
    if k not in svc_info.settings:
      fail("compose.env_setting", "%s is not a setting of %s (--help)"
           % (k, SINK))

  # Ports: what is published/exposed and scraped is what the service uses.
  http = int(svc_info.effective("HTTP_PORT", env))
  metrics = int(svc_info.effective("METRICS_PORT", env))
  for k in ("HTTP_PORT", "METRICS_PORT"):
    if k in env and env[k] != svc_info.default(k):
      fail("compose.ports", "%s=%s differs from the service's default %s"
           % (k, env[k], svc_info.default(k)))
  cports = set()
  for p in sink.get("ports") or []:
    cports.add(int(str(p).split(":")[-1].split("/")[0]))
  for p in sink.get("expose") or []:
    cports.add(int(str(p).split("/")[0]))
  if http not in cports or metrics not in cports or cports - {http, metrics}:
    fail("compose.ports", "sink ports/expose %s, service listens on %d "
         "(HTTP) and %d (metrics)" % (sorted(cports), http, metrics))

  # Kafka: the upstream image at the tests' Kafka version.
  pom = ET.parse(os.path.join(repo, "tests/kafka/pom.xml")).getroot()
  ns = {"m": "http://maven.apache.org/POM/4.0.0"}
  version = pom.find("m:properties/m:kafka.version", ns)
  if version is None:
    version = pom.find("properties/kafka.version")
  kimage = services["kafka"].get("image", "")
  if kimage.rsplit(":", 1)[0] not in ("apache/kafka",
                                      "docker.io/apache/kafka") \
      or image_tag(kimage) != version.text.strip():
    fail("compose.kafka_version", "kafka image %s, pom.xml kafka.version %s"
         % (kimage, version.text.strip()))
  kenv = env_of(services["kafka"])
  if "broker" not in kenv.get("KAFKA_PROCESS_ROLES", "") \
      or "controller" not in kenv.get("KAFKA_PROCESS_ROLES", ""):
    fail("compose.kafka_version", "kafka is not one KRaft broker+controller")

  # The sink's bootstrap servers are what the broker advertises.
  adv = re.findall(r"PLAINTEXT://([^,]+)",
                   kenv.get("KAFKA_ADVERTISED_LISTENERS", ""))
  boot = svc_info.effective("KAFKA_BOOTSTRAP_SERVERS", env).split(",")
  if not adv or any(b not in adv for b in boot):
    fail("compose.kafka_listener", "sink bootstrap %s, kafka advertises %s"
         % (boot, adv))

  # kafka-init creates exactly the topics the sink consumes.
  init = services["kafka-init"]
  if init.get("image") != kimage:
    fail("compose.kafka_init", "kafka-init image %s is not kafka's %s"
         % (init.get("image"), kimage))
  text = cmd_text(init, "entrypoint") + " " + cmd_text(init, "command")
  text = interpolate(text)
  topics = svc_info.effective("KAFKA_TOPICS", env).split(",")
  if KAFKA_TOOLS not in text or "--create" not in text:
    fail("compose.kafka_init", "kafka-init does not run %s --create"
         % KAFKA_TOOLS)
  named = set(re.findall(r"apexflow\.[a-z.]+[a-z]", text))
  if named != set(topics):
    fail("compose.kafka_init", "kafka-init creates %s, the sink consumes %s"
         % (sorted(named), topics))
  parts = [int(p) for p in re.findall(r"--partitions[ =](\d+)", text)]
  persisters = int(svc_info.default("PERSISTER_CONNECTIONS"))
  if not parts or any(p < persisters or p % persisters for p in parts):
    fail("compose.kafka_init", "partitions %s: need a multiple of the %d "
         "persisters" % (parts, persisters))

  # Start order.
  dep = sink.get("depends_on") or {}
  want = {"postgres": "service_healthy",
          "kafka-init": "service_completed_successfully"}
  for s, cond in want.items():
    got = dep.get(s, {}).get("condition") if isinstance(dep, dict) else None
    if got != cond:
      fail("compose.depends_on", "%s depends on %s with %s, want %s"
           % (SINK, s, got, cond))
  if "healthcheck" not in services["postgres"]:
    fail("compose.depends_on", "postgres has no healthcheck")
  idep = init.get("depends_on") or {}
  if not isinstance(idep, dict) or \
      idep.get("kafka", {}).get("condition") != "service_healthy" or \
      "healthcheck" not in services["kafka"]:
    fail("compose.depends_on", "kafka-init must wait for a healthy kafka")

  # Every bind-mounted file and secret file exists in the repository.
  for name, svc in services.items():
    for src, _ in binds(svc):
      if not os.path.exists(host_path(cdir, src)):
        fail("compose.mounts", "%s mounts %s: not in the repository"
             % (name, src))
  for name, sec in (c.get("secrets") or {}).items():
    f = interpolate(sec.get("file", ""))
    if not f or not os.path.isfile(host_path(cdir, f)):
      fail("compose.mounts", "secret %s: file %r not in the repository"
           % (name, f))

  # The admin key comes from a compose secret the sink is given.
  atf = env.get("ADMIN_TOKEN_FILE", "")
  sink_secrets = [s if isinstance(s, str) else s.get("source")
                  for s in sink.get("secrets") or []]
  if not any(atf == "/run/secrets/" + s for s in sink_secrets):
    fail("compose.secrets", "ADMIN_TOKEN_FILE %r is not one of the sink's "
         "secrets %s" % (atf, sink_secrets))

  # No secret but clearly marked example values.
  for name, svc in services.items():
    for k, v in env_of(svc).items():
      if k.endswith("_FILE") or not v:
        continue
      secretish = SECRET_WORDS.search(k)
      m = re.match(r"^[a-z]+://[^:/@]*:([^@]*)@", v)
      if m:
        v, secretish = m.group(1), True
      if secretish and "example" not in v.lower():
        fail("compose.secrets", "%s: %s holds a value not marked as an "
             "example" % (name, k))

  # Every image pinned by a version tag.
  for name, svc in services.items():
    tag = image_tag(svc.get("image", ""))
    if not re.match(r"^v?\d+(\.\d+)*", tag):
      fail("compose.pinned", "%s: image %r has no version tag"
           % (name, svc.get("image")))

  # The sink is built from the repository's Dockerfile, tagged with the
  # binary's version; the sample producer runs from the same image.
  b = sink.get("build") or {}
  if not isinstance(b, dict) or \
      os.path.normpath(host_path(cdir, b.get("context", "."))) != \
      os.path.normpath(repo) or b.get("dockerfile", "Dockerfile") != \
      "Dockerfile" or not os.path.isfile(os.path.join(repo, "Dockerfile")):
    fail("compose.build", "%s is not built from the repository's "
         "Dockerfile: %r" % (SINK, b))
  want_image = "localhost/%s:%s" % (SINK, svc_info.version)
  if sink.get("image") != want_image:
    fail("compose.build", "sink image %r, want %r"
         % (sink.get("image"), want_image))
  sample = services["sample"]
  stext = cmd_text(sample, "entrypoint") + " " + cmd_text(sample, "command")
  boot = re.search(r"--bootstrap[ =](\S+)", stext)
  if sample.get("image") != sink.get("image") or \
      "sample" not in (sample.get("profiles") or []) or \
      not stext.startswith("/usr/local/bin/crm-produce") or \
      not boot or boot.group(1) != \
      svc_info.effective("KAFKA_BOOTSTRAP_SERVERS", env) or \
      not re.search(r"--count[ =]0\b", stext):
    fail("compose.build", "sample: %r %r, image %r" %
         (stext, sample.get("profiles"), sample.get("image")))

  # Stopping: the grace period outlasts the longest graceful stop.
  t = int(svc_info.effective("SHUTDOWN_TIMEOUT_MS", env))
  grace = duration_s(sink.get("stop_grace_period", "10s"))
  if sink.get("stop_signal", "SIGTERM") != "SIGTERM" or grace is None or \
      grace <= worst_stop_s(t):
    fail("compose.stop_grace", "stop_grace_period %s <= %.1f s (the longest "
         "graceful stop with shutdown-timeout-ms %d)"
         % (sink.get("stop_grace_period"), worst_stop_s(t), t))

  # Prometheus: its config is deploy/prometheus/prometheus.yml, it scrapes
  # the sink's metrics port, and its rule files are mounted from the repo.
  prom = services["prometheus"]
  pmap = {dst: host_path(cdir, src) for src, dst in binds(prom)}
  cfg_host = pmap.get("/etc/prometheus/prometheus.yml")
  if cfg_host != os.path.join(repo, "deploy/prometheus/prometheus.yml"):
    fail("compose.scrape", "prometheus does not mount "
         "deploy/prometheus/prometheus.yml at /etc/prometheus/prometheus.yml")
  pcfg = model["prometheus"]
  targets = [(sc.get("job_name"), t)
             for sc in pcfg.get("scrape_configs") or []
             for st in sc.get("static_configs") or []
             for t in st.get("targets") or []]
  if (SINK, "%s:%d" % (SINK, metrics)) not in targets:
    fail("compose.scrape", "no job %s scraping %s:%d (targets %s)"
         % (SINK, SINK, metrics, targets))
  rules = pcfg.get("rule_files") or []
  if "/etc/prometheus/alerts.yml" not in rules or \
      pmap.get("/etc/prometheus/alerts.yml") != \
      os.path.join(repo, "deploy/prometheus/alerts.yml"):
    fail("compose.scrape", "rule_files %s: want /etc/prometheus/alerts.yml "
         "mounted from deploy/prometheus/alerts.yml" % rules)
  # promtool, with each rule file path replaced by the repository file
  # compose mounts there (a path not mounted stays as it is and fails).
  with tempfile.TemporaryDirectory() as tmp:
    local = copy.deepcopy(pcfg)
    local["rule_files"] = [pmap.get(r, r) for r in rules]
    path = os.path.join(tmp, "prometheus.yml")
    with open(path, "w") as f:
      yaml.safe_dump(local, f)
    r = subprocess.run(["promtool", "check", "config", path],
                       capture_output=True, text=True)
    if r.returncode != 0:
      fail("compose.promtool", "promtool check config: %s"
           % (r.stdout + r.stderr).strip().replace(tmp, "<tmp>")
           .replace("\n", " | "))

  # Grafana: provisioning mounted; the datasource is the compose Prometheus;
  # the dashboard provider reads the directory the dashboard is mounted in.
  graf = services["grafana"]
  gmap = {dst: host_path(cdir, src) for src, dst in binds(graf)}
  prov = gmap.get("/etc/grafana/provisioning")
  if prov != os.path.join(repo, "deploy/grafana/provisioning"):
    fail("compose.grafana", "deploy/grafana/provisioning is not mounted at "
         "/etc/grafana/provisioning")
  ds = model["grafana_datasources"]
  urls = [d.get("url") for d in ds.get("datasources") or []
          if d.get("type") == "prometheus"]
  prom_port = [str(p).split(":")[-1] for p in prom.get("ports") or []]
  if urls != ["http://prometheus:9090"] or "9090" not in prom_port:
    fail("compose.grafana", "datasource urls %s, want the compose "
         "prometheus (http://prometheus:9090)" % urls)
  dash_dirs = [os.path.dirname(dst) for dst, src in gmap.items()
               if src == os.path.join(repo,
                                      "deploy/grafana/crm-events-sink.json")]
  paths = [p.get("options", {}).get("path")
           for p in model["grafana_dashboards"].get("providers") or []]
  if not dash_dirs or dash_dirs[0] not in paths:
    fail("compose.grafana", "dashboard mounted in %s, providers read %s"
         % (dash_dirs, paths))


def podman_compose_check(compose_file, repo, fail):
  """podman-compose parses the file and would build the repo's Dockerfile."""
  r = subprocess.run(["podman-compose", "--dry-run", "-f", compose_file,
                      "build"], capture_output=True, text=True,
                     cwd=os.path.dirname(compose_file))
  out = r.stdout + r.stderr
  if r.returncode != 0:
    fail("compose.podman", "podman-compose --dry-run build: exit %d: %s"
         % (r.returncode, out.strip().splitlines()[-1:] if out else ""))
    return
  m = re.search(r"^podman build .*-t (\S+) -f (\S+) (\S+)$", out, re.M)
  cdir = os.path.dirname(compose_file)
  if not m or os.path.normpath(os.path.join(cdir, m.group(2))) != \
      os.path.join(repo, "Dockerfile"):
    fail("compose.podman", "podman-compose would not build %s/Dockerfile: %s"
         % (repo, out.strip()))


# ---- kubernetes -------------------------------------------------------------

def check_kubernetes(model, svc_info, fail):
  files = model["k8s"]  # file name -> list of documents
  docs = []
  for fname, ds in files.items():
    for d in ds:
      if not isinstance(d, dict) or not d.get("apiVersion") or \
          not d.get("kind") or not (d.get("metadata") or {}).get("name") \
          and d.get("kind") != "Kustomization":
        fail("k8s.parse", "%s: a document without apiVersion, kind or "
             "metadata.name" % fname)
        continue
      docs.append((fname, d))
  by_kind = {}
  for fname, d in docs:
    by_kind.setdefault(d["kind"], []).append(d)

  # kustomization lists every manifest but the example Secret.
  kus = by_kind.get("Kustomization", [])
  want = {f for f in files if f not in ("kustomization.yaml",
                                        "secret.example.yaml")}
  if len(kus) != 1 or set(kus[0].get("resources") or []) != want:
    fail("k8s.kustomization", "kustomization resources %s, want %s"
         % (kus and kus[0].get("resources"), sorted(want)))

  deps = by_kind.get("Deployment", [])
  if len(deps) != 1:
    fail("k8s.parse", "want one Deployment, found %d" % len(deps))
    return
  dep = deps[0]
  pod = dep["spec"]["template"]
  pspec = pod["spec"]
  conts = [c for c in pspec.get("containers") or [] if c.get("name") == SINK]
  if len(conts) != 1:
    fail("k8s.parse", "no container %s" % SINK)
    return
  cont = conts[0]
  cms = {d["metadata"]["name"]: d for d in by_kind.get("ConfigMap", [])}
  secrets = {d["metadata"]["name"]: d for d in by_kind.get("Secret", [])}

  # The container's environment: ConfigMaps (envFrom) then env.
  env = {}
  for ef in cont.get("envFrom") or []:
    ref = (ef.get("configMapRef") or {}).get("name")
    sref = (ef.get("secretRef") or {}).get("name")
    if ref:
      if ref not in cms:
        fail("k8s.secret_refs", "envFrom ConfigMap %s not defined" % ref)
        continue
      env.update({k: str(v) for k, v in
                  (cms[ref].get("data") or {}).items()})
    if sref:
      if sref not in secrets:
        fail("k8s.secret_refs", "envFrom Secret %s not defined" % sref)
        continue
      s = secrets[sref]
      env.update({k: "<secret>" for k in
                  list((s.get("stringData") or {}).keys())
                  + list((s.get("data") or {}).keys())})
  for e in cont.get("env") or []:
    vf = e.get("valueFrom") or {}
    if "secretKeyRef" in vf:
      ref = vf["secretKeyRef"]
      s = secrets.get(ref.get("name"))
      keys = set((s.get("stringData") or {}).keys()) | \
        set((s.get("data") or {}).keys()) if s else set()
      if ref.get("key") not in keys:
        fail("k8s.secret_refs", "env %s: Secret %s has no key %s"
             % (e["name"], ref.get("name"), ref.get("key")))
      env[e["name"]] = "<secret>"
    elif "configMapKeyRef" in vf:
      ref = vf["configMapKeyRef"]
      cm = cms.get(ref.get("name"))
      if not cm or ref.get("key") not in (cm.get("data") or {}):
        fail("k8s.secret_refs", "env %s: ConfigMap %s has no key %s"
             % (e["name"], ref.get("name"), ref.get("key")))
      env[e["name"]] = str((cm or {}).get("data", {}).get(ref.get("key")))
    else:
      env[e["name"]] = str(e.get("value", ""))

  # Every variable and every ConfigMap key is a setting of the service.
  for name, cm in cms.items():
    for k in cm.get("data") or {}:
      if k not in svc_info.settings:
        fail("k8s.settings", "ConfigMap %s: %s is not a setting (--help)"
             % (name, k))
  for k in env:
    if k not in svc_info.settings:
      fail("k8s.settings", "env %s is not a setting (--help)" % k)
  if svc_info.default("DATABASE_URL") is None and "DATABASE_URL" not in env:
    fail("k8s.settings", "DATABASE_URL (required) is not set")
  # Secrets stay in the Secret.
  for name, cm in cms.items():
    for k, v in (cm.get("data") or {}).items():
      if k == "DATABASE_URL" or (SECRET_WORDS.search(k)
                                 and not k.endswith("_FILE")):
        fail("k8s.secret_refs", "ConfigMap %s holds %s: a Secret's job"
             % (name, k))
  for name, s in secrets.items():
    for k, v in (s.get("stringData") or {}).items():
      if "example" not in str(v).lower():
        fail("k8s.secret_refs", "Secret %s: %s is not marked as an example"
             % (name, k))

  http = int(svc_info.effective("HTTP_PORT", env))
  metrics = int(svc_info.effective("METRICS_PORT", env))
  named = {p.get("name"): p["containerPort"] for p in cont.get("ports") or []}
  if sorted(named.values()) != sorted([http, metrics]):
    fail("k8s.probes", "container ports %s, service listens on %d and %d"
         % (named, http, metrics))

  def port_of(p):
    return named.get(p) if isinstance(p, str) else p

  # Probes: liveness /health, readiness /ready, on the HTTP port.
  for probe, path in (("livenessProbe", "/health"),
                      ("readinessProbe", "/ready"),
                      ("startupProbe", "/health")):
    pr = cont.get(probe)
    if pr is None and probe == "startupProbe":
      continue
    g = (pr or {}).get("httpGet") or {}
    if g.get("path") != path or port_of(g.get("port")) != http:
      fail("k8s.probes", "%s: %s on %s, want %s on %d"
           % (probe, g.get("path"), g.get("port"), path, http))

  # Grace period above the longest graceful stop.
  t = int(svc_info.effective("SHUTDOWN_TIMEOUT_MS", env))
  grace = pspec.get("terminationGracePeriodSeconds", 30)
  if not grace > worst_stop_s(t):
    fail("k8s.grace", "terminationGracePeriodSeconds %s <= %.1f s (the "
         "longest graceful stop with shutdown-timeout-ms %d)"
         % (grace, worst_stop_s(t), t))

  # Security context (container settings override the pod's).
  psc = pspec.get("securityContext") or {}
  csc = cont.get("securityContext") or {}

  def eff(key):
    return csc.get(key, psc.get(key))
  if eff("runAsNonRoot") is not True:
    fail("k8s.security", "runAsNonRoot is not true")
  if eff("runAsUser") != 10001:
    fail("k8s.security", "runAsUser %s, want 10001 (the image's ces)"
         % eff("runAsUser"))
  if csc.get("readOnlyRootFilesystem") is not True:
    fail("k8s.security", "readOnlyRootFilesystem is not true")
  if csc.get("allowPrivilegeEscalation") is not False:
    fail("k8s.security", "allowPrivilegeEscalation is not false")
  if (csc.get("capabilities") or {}).get("drop") != ["ALL"] or \
      (csc.get("capabilities") or {}).get("add"):
    fail("k8s.security", "capabilities: want drop [ALL] and no add")
  if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
    fail("k8s.security", "seccompProfile is not RuntimeDefault")
  if eff("privileged"):
    fail("k8s.security", "privileged")

  # Resources from the measured RSS.
  res = cont.get("resources") or {}
  for kind in ("requests", "limits"):
    for r in ("cpu", "memory"):
      if r not in (res.get(kind) or {}):
        fail("k8s.resources", "resources.%s.%s is not set" % (kind, r))
  req = mib((res.get("requests") or {}).get("memory", "0"))
  lim = mib((res.get("limits") or {}).get("memory", "0"))
  if req is None or lim is None or req < MEASURED_PEAK_RSS_MIB or lim < req:
    fail("k8s.resources", "memory request %s / limit %s: the request must "
         "cover the measured peak RSS (%d MiB) and the limit the request"
         % (req, lim, MEASURED_PEAK_RSS_MIB))

  # Volumes: every mount has a volume; /tmp writable on the read-only root;
  # ADMIN_TOKEN_FILE is a key of the Secret mounted there.
  vols = {v["name"]: v for v in pspec.get("volumes") or []}
  mounts = {m["mountPath"]: m for m in cont.get("volumeMounts") or []}
  for path, m in mounts.items():
    if m.get("name") not in vols:
      fail("k8s.mounts", "volumeMount %s: no volume %s" % (path, m["name"]))
  tmp = mounts.get("/tmp")
  if not tmp or "emptyDir" not in vols.get(tmp.get("name"), {}):
    fail("k8s.mounts", "no emptyDir at /tmp on the read-only root")
  atf = env.get("ADMIN_TOKEN_FILE")
  if atf:
    d, base = os.path.split(atf)
    m = mounts.get(d)
    sv = vols.get(m.get("name"), {}).get("secret") if m else None
    ok = False
    if sv:
      s = secrets.get(sv.get("secretName")) or {}
      keys = set((s.get("stringData") or {}).keys()) | \
        set((s.get("data") or {}).keys())
      items = sv.get("items")
      files = {i["path"]: i["key"] for i in items} if items else \
        {k: k for k in keys}
      ok = base in files and files[base] in keys
    if not ok:
      fail("k8s.mounts", "ADMIN_TOKEN_FILE %s is not a key of a mounted "
           "Secret" % atf)
  for v in vols.values():
    sv = v.get("secret")
    if sv:
      s = secrets.get(sv.get("secretName"))
      keys = set((s or {}).get("stringData", {}) or {}) | \
        set((s or {}).get("data", {}) or {})
      for i in sv.get("items") or []:
        if i["key"] not in keys:
          fail("k8s.secret_refs", "volume %s: Secret %s has no key %s"
               % (v["name"], sv.get("secretName"), i["key"]))

  # Service: both ports, to the container's, selecting the pod.
  svcs = by_kind.get("Service", [])
  if len(svcs) != 1:
    fail("k8s.service", "want one Service, found %d" % len(svcs))
  else:
    spec = svcs[0]["spec"]
    got = sorted((p["port"], port_of(p.get("targetPort", p["port"])))
                 for p in spec.get("ports") or [])
    if got != sorted([(http, http), (metrics, metrics)]):
      fail("k8s.service", "Service ports %s, want %d and %d to the same "
           "container ports" % (got, http, metrics))
    labels = pod["metadata"].get("labels") or {}
    sel = spec.get("selector") or {}
    if not sel or any(labels.get(k) != v for k, v in sel.items()):
      fail("k8s.service", "selector %s does not match the pod's labels %s"
           % (sel, labels))

  # The image of this version; Prometheus scrape annotations on metrics.
  want_image = "localhost/%s:%s" % (SINK, svc_info.version)
  if cont.get("image") != want_image:
    fail("k8s.image", "image %s, want %s" % (cont.get("image"), want_image))
  ann = pod["metadata"].get("annotations") or {}
  if ann.get("prometheus.io/scrape") != "true" or \
      ann.get("prometheus.io/port") != str(metrics) or \
      ann.get("prometheus.io/path", "/metrics") != "/metrics":
    fail("k8s.scrape", "prometheus.io annotations %s, want port %d" %
         (ann, metrics))


# ---- loading, self-test, main --------------------------------------------

def load_model(repo):
  d = os.path.join(repo, "deploy")

  def y(p):
    with open(os.path.join(d, p)) as f:
      return yaml.safe_load(f)
  k8s = {}
  kdir = os.path.join(d, "kubernetes")
  for f in sorted(os.listdir(kdir)):
    if f.endswith((".yaml", ".yml")):
      with open(os.path.join(kdir, f)) as fh:
        k8s[f] = [doc for doc in yaml.safe_load_all(fh) if doc is not None]
  return {
    "repo": os.path.realpath(repo),
    "compose_dir": os.path.realpath(d),
    "compose": y("compose.yaml"),
    "prometheus": y("prometheus/prometheus.yml"),
    "grafana_datasources": y("grafana/provisioning/datasources/"
                             "prometheus.yml"),
    "grafana_dashboards": y("grafana/provisioning/dashboards/"
                            "crm-events-sink.yml"),
    "k8s": k8s,
  }


def run_checks(model, svc_info, which):
  failures = []

  def fail(check, msg):
    failures.append((check, msg))
  if which == "compose":
    check_compose(model, svc_info, fail)
  else:
    check_kubernetes(model, svc_info, fail)
  return failures


def _sink(m):
  return m["compose"]["services"][SINK]


def _svc(m, s):
  return m["compose"]["services"][s]


def _dep(m):
  return next(d for d in m["k8s"]["deployment.yaml"]
              if d.get("kind") == "Deployment")


def _cont(m):
  return _dep(m)["spec"]["template"]["spec"]["containers"][0]


def _csc(m):
  return _cont(m)["securityContext"]


def _psc(m):
  return _dep(m)["spec"]["template"]["spec"]["securityContext"]


def _cm(m):
  return m["k8s"]["configmap.yaml"][0]["data"]


def _set(d, k, v):
  d[k] = v


# (check that must fail, what the mutation does, the mutation)
MUTATIONS = [
  ("compose.env_setting", "an unknown variable on the sink",
   lambda m: _set(_sink(m)["environment"], "KAFKA_BOOTSTRAP", "kafka:9092")),
  ("compose.ports", "HTTP_PORT not the default",
   lambda m: _set(_sink(m)["environment"], "HTTP_PORT", "9107")),
  ("compose.ports", "the metrics port not exposed",
   lambda m: _set(_sink(m), "expose", [])),
  ("compose.kafka_version", "another Kafka version",
   lambda m: _set(_svc(m, "kafka"), "image", "apache/kafka:3.9.0")),
  ("compose.kafka_version", "not combined broker+controller",
   lambda m: _set(_svc(m, "kafka")["environment"], "KAFKA_PROCESS_ROLES",
                  "broker")),
  ("compose.kafka_listener", "the broker advertises localhost",
   lambda m: _set(_svc(m, "kafka")["environment"],
                  "KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://localhost:9092")),
  ("compose.kafka_listener", "the sink bootstraps elsewhere",
   lambda m: _set(_sink(m)["environment"], "KAFKA_BOOTSTRAP_SERVERS",
                  "broker:9092")),
  ("compose.kafka_init", "one topic not created",
   lambda m: _set(_svc(m, "kafka-init"), "command",
                  [c.replace(" apexflow.jobs.created", "")
                   for c in _svc(m, "kafka-init")["command"]])),
  ("compose.kafka_init", "one partition per topic",
   lambda m: _set(_svc(m, "kafka-init"), "command",
                  [c.replace("--partitions 8", "--partitions 1")
                   for c in _svc(m, "kafka-init")["command"]])),
  ("compose.kafka_init", "the sink consumes another topic",
   lambda m: _set(_sink(m)["environment"], "KAFKA_TOPICS",
                  "apexflow.leads.created")),
  ("compose.depends_on", "postgres only started, not healthy",
   lambda m: _set(_sink(m)["depends_on"], "postgres",
                  {"condition": "service_started"})),
  ("compose.depends_on", "no wait for the topics",
   lambda m: _sink(m)["depends_on"].pop("kafka-init")),
  ("compose.mounts", "a mounted file missing",
   lambda m: _set(_svc(m, "grafana"), "volumes",
                  _svc(m, "grafana")["volumes"]
                  + ["./grafana/missing.json:/x.json:ro"])),
  ("compose.mounts", "the secret file missing",
   lambda m: _set(m["compose"]["secrets"]["admin_key"], "file",
                  "./secrets/missing.key")),
  ("compose.secrets", "a real-looking password",
   lambda m: _set(_svc(m, "grafana")["environment"],
                  "GF_SECURITY_ADMIN_PASSWORD", "hunter2")),
  ("compose.secrets", "a password in DATABASE_URL",
   lambda m: _set(_sink(m)["environment"], "DATABASE_URL",
                  "postgresql://crm:hunter2@postgres:5432/crm")),
  ("compose.secrets", "ADMIN_TOKEN_FILE not a secret of the sink",
   lambda m: _set(_sink(m)["environment"], "ADMIN_TOKEN_FILE",
                  "/etc/admin.key")),
  ("compose.pinned", "an image without a tag",
   lambda m: _set(_svc(m, "grafana"), "image", "grafana/grafana")),
  ("compose.pinned", "an image at latest",
   lambda m: _set(_svc(m, "postgres"), "image", "postgres:latest")),
  ("compose.build", "another Dockerfile",
   lambda m: _set(_sink(m)["build"], "dockerfile", "Dockerfile.dev")),
  ("compose.build", "another image version",
   lambda m: _set(_sink(m), "image", "localhost/crm-events-sink:0.0.9")),
  ("compose.build", "sample against another broker",
   lambda m: _set(_svc(m, "sample"), "command",
                  ["--bootstrap", "localhost:9092", "--count", "0"])),
  ("compose.build", "sample not in a profile",
   lambda m: _svc(m, "sample").pop("profiles")),
  ("compose.stop_grace", "grace below the longest stop",
   lambda m: _set(_sink(m), "stop_grace_period", "20s")),
  ("compose.stop_grace", "a longer shutdown timeout, same grace",
   lambda m: _set(_sink(m)["environment"], "SHUTDOWN_TIMEOUT_MS", "60000")),
  ("compose.scrape", "scraping the HTTP port",
   lambda m: _set(m["prometheus"]["scrape_configs"][0], "static_configs",
                  [{"targets": ["crm-events-sink:9106"]}])),
  ("compose.scrape", "no rule file",
   lambda m: _set(m["prometheus"], "rule_files", [])),
  ("compose.promtool", "an invalid scrape interval",
   lambda m: _set(m["prometheus"]["global"], "scrape_interval", "banana")),
  ("compose.promtool", "a rule file not mounted",
   lambda m: _set(m["prometheus"], "rule_files",
                  ["/etc/prometheus/other.yml"]
                  + m["prometheus"]["rule_files"])),
  ("compose.grafana", "datasource elsewhere",
   lambda m: _set(m["grafana_datasources"]["datasources"][0], "url",
                  "http://localhost:9090")),
  ("compose.grafana", "provider reads another directory",
   lambda m: _set(m["grafana_dashboards"]["providers"][0]["options"],
                  "path", "/var/lib/grafana/dashboards")),
  ("k8s.parse", "a document without kind",
   lambda m: m["k8s"]["service.yaml"][0].pop("kind")),
  ("k8s.kustomization", "a manifest not listed",
   lambda m: m["k8s"]["kustomization.yaml"][0]["resources"].remove(
     "service.yaml")),
  ("k8s.kustomization", "the example Secret listed",
   lambda m: m["k8s"]["kustomization.yaml"][0]["resources"].append(
     "secret.example.yaml")),
  ("k8s.grace", "grace equal to the shutdown timeout",
   lambda m: _set(_dep(m)["spec"]["template"]["spec"],
                  "terminationGracePeriodSeconds", 10)),
  ("k8s.grace", "a longer shutdown timeout in the ConfigMap",
   lambda m: _set(_cm(m), "SHUTDOWN_TIMEOUT_MS", "30000")),
  ("k8s.probes", "liveness on /ready",
   lambda m: _set(_cont(m)["livenessProbe"]["httpGet"], "path", "/ready")),
  ("k8s.probes", "readiness on the metrics port",
   lambda m: _set(_cont(m)["readinessProbe"]["httpGet"], "port", "metrics")),
  ("k8s.probes", "no readiness probe",
   lambda m: _cont(m).pop("readinessProbe")),
  ("k8s.probes", "HTTP_PORT moved, probes not",
   lambda m: _set(_cm(m), "HTTP_PORT", "8080")),
  ("k8s.security", "root", lambda m: (_set(_psc(m), "runAsUser", 0),
                                      _set(_csc(m), "runAsUser", 0))),
  ("k8s.security", "runAsNonRoot false",
   lambda m: _set(_csc(m), "runAsNonRoot", False)),
  ("k8s.security", "writable root",
   lambda m: _set(_csc(m), "readOnlyRootFilesystem", False)),
  ("k8s.security", "privilege escalation",
   lambda m: _csc(m).pop("allowPrivilegeEscalation")),
  ("k8s.security", "capabilities kept",
   lambda m: _set(_csc(m), "capabilities", {"drop": ["NET_RAW"]})),
  ("k8s.security", "no seccomp profile",
   lambda m: _psc(m).pop("seccompProfile")),
  ("k8s.resources", "no limits", lambda m: _cont(m)["resources"].pop(
    "limits")),
  ("k8s.resources", "memory below the measured RSS",
   lambda m: _set(_cont(m)["resources"]["requests"], "memory", "64Mi")),
  ("k8s.settings", "an unknown ConfigMap key",
   lambda m: _set(_cm(m), "KAFKA_TOPIC", "x")),
  ("k8s.settings", "an unknown env",
   lambda m: _cont(m)["env"].append({"name": "LOGFORMAT", "value": "json"})),
  ("k8s.secret_refs", "a Secret key that does not exist",
   lambda m: _set(_cont(m)["env"][0]["valueFrom"]["secretKeyRef"], "key",
                  "DB_URL")),
  ("k8s.secret_refs", "DATABASE_URL in the ConfigMap",
   lambda m: _set(_cm(m), "DATABASE_URL", "postgresql://crm@db/crm")),
  ("k8s.secret_refs", "an unmarked secret value",
   lambda m: _set(m["k8s"]["secret.example.yaml"][0]["stringData"],
                  "admin.key", "ces_" + "A" * 43)),
  ("k8s.mounts", "no writable /tmp",
   lambda m: _set(_cont(m), "volumeMounts",
                  [v for v in _cont(m)["volumeMounts"]
                   if v["mountPath"] != "/tmp"])),
  ("k8s.mounts", "ADMIN_TOKEN_FILE outside the Secret's mount",
   lambda m: _set(_cm(m), "ADMIN_TOKEN_FILE", "/etc/admin.key")),
  ("k8s.service", "targetPort elsewhere",
   lambda m: _set(m["k8s"]["service.yaml"][0]["spec"]["ports"][0],
                  "targetPort", 8080)),
  ("k8s.service", "selector misses the pod",
   lambda m: _set(m["k8s"]["service.yaml"][0]["spec"], "selector",
                  {"app": "other"})),
  ("k8s.image", "another version",
   lambda m: _set(_cont(m), "image", "localhost/crm-events-sink:9.9.9")),
  ("k8s.scrape", "annotation on the HTTP port",
   lambda m: _set(_dep(m)["spec"]["template"]["metadata"]["annotations"],
                  "prometheus.io/port", "9106")),
]


def selftest(repo, svc_info):
  base = load_model(repo)
  # A mutation is caught when its check reports a failure the unmutated
  # files do not have (so a failure elsewhere, e.g. a file another branch
  # brings, does not hide or fake a catch).
  baseline = {w: set(run_checks(base, svc_info, w))
              for w in ("compose", "kubernetes")}
  for w, fs in baseline.items():
    for c, msg in sorted(fs):
      print("note: %s already fails without mutation: %s: %s" % (w, c, msg))
  bad = 0
  for check, what, mutate in MUTATIONS:
    which = "compose" if check.startswith("compose.") else "kubernetes"
    m = copy.deepcopy(base)
    mutate(m)
    got = set(run_checks(m, svc_info, which)) - baseline[which]
    if check in {c for c, _ in got}:
      print("selftest ok: %s catches %s" % (check, what))
    else:
      print("SELFTEST %s did not catch: %s (new failures %s)"
            % (check, what, sorted(got)))
      bad += 1
  # Every check id is proven by at least one mutation.
  ids = {c for c, _, _ in MUTATIONS}
  src = open(os.path.abspath(__file__)).read()
  used = set(re.findall(r'fail\("((?:compose|k8s)\.[a-z_]+)"', src))
  for c in sorted(used - ids - {"compose.services", "compose.podman"}):
    print("SELFTEST no mutation proves %s" % c)
    bad += 1
  # podman-compose: a compose file it refuses, in a scratch copy.
  with tempfile.TemporaryDirectory() as tmp:
    shutil.copytree(os.path.join(repo, "deploy"), os.path.join(tmp, "deploy"))
    if os.path.exists(os.path.join(repo, "Dockerfile")):
      os.symlink(os.path.join(repo, "Dockerfile"),
                 os.path.join(tmp, "Dockerfile"))
    f = os.path.join(tmp, "deploy", "compose.yaml")
    for what, edit in (
        ("a Dockerfile that is not there",
         lambda c: _set(c["services"][SINK]["build"], "dockerfile",
                        "Dockerfile.missing")),
        ("services that are not a mapping",
         lambda c: _set(c, "services", ["postgres"]))):
      c = copy.deepcopy(base["compose"])
      edit(c)
      with open(f, "w") as fh:
        yaml.safe_dump(c, fh)
      got = []
      podman_compose_check(f, os.path.realpath(tmp),
                           lambda k, msg: got.append(k))
      if "compose.podman" in got:
        print("selftest ok: compose.podman catches %s" % what)
      else:
        print("SELFTEST compose.podman did not catch: %s" % what)
        bad += 1
  print("selftest: %d mutations, %d not caught" % (len(MUTATIONS) + 2, bad))
  return 1 if bad else 0


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--repo", required=True)
  ap.add_argument("--binary", required=True)
  ap.add_argument("what", choices=("compose", "kubernetes", "selftest"))
  a = ap.parse_args()
  svc_info = Service(a.binary)
  if a.what == "selftest":
    return selftest(a.repo, svc_info)
  model = load_model(a.repo)
  failures = run_checks(model, svc_info, a.what)
  if a.what == "compose":
    podman_compose_check(os.path.join(model["compose_dir"], "compose.yaml"),
                         model["repo"],
                         lambda c, m: failures.append((c, m)))
  for c, m in failures:
    print("FAIL %s: %s" % (c, m))
  print("%s: %d settings from --help, version %s, %d failures"
        % (a.what, len(svc_info.settings), svc_info.version, len(failures)))
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
