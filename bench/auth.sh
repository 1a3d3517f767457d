#!/usr/bin/env bash
# bench/auth.sh: what authentication adds to an operator API request.
#
#   bench/auth.sh [--requests N] [--build-dir DIR] [--no-build] [--keep]
#
# Starts a throwaway PostgreSQL and three crm-events-sink instances (embedded
# broker each): `off` (API_AUTH=off), `on` (auth on, default key cache) and
# `nocache` (auth on, --auth-key-cache-ms=0: every request looks its key up in
# PostgreSQL). Then one keep-alive HTTP client sends GET /supervision (answered
# by the supervisor actor: no database read, so the figure is the request
# path plus authentication) round-robin over the modes below, N requests each
# after a warm-up, and prints p50/p99 per mode and the p99 overhead against
# `off`:
#   off          no credentials, auth off
#   key          Bearer API key, cached lookup
#   basic        HTTP Basic (key name + key), cached lookup
#   key_nocache  Bearer API key, PostgreSQL lookup every time
#   hs256        Bearer JWT, HS256
#   rs256        Bearer JWT, RS256 (JWKS file)
# Target (issue 9): authentication adds <= 1 ms p99.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUESTS=3000
BUILD_DIR=$ROOT/build
BUILD=1
KEEP=0
while [ $# -gt 0 ]; do
  case $1 in
    --requests) REQUESTS=$2; shift 2 ;;
    --build-dir) BUILD_DIR=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    --keep) KEEP=1; shift ;;
    --help|-h) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "auth.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

if [ "$BUILD" = 1 ]; then
  BUILD_DIR=$BUILD_DIR "$ROOT/scripts/build.sh" --target crm-events-sink >/dev/null
fi
SINK=$BUILD_DIR/actors/crm-events-sink
[ -x "$SINK" ] || { echo "auth.sh: no $SINK (build first)" >&2; exit 1; }

WORK=$(mktemp -d /tmp/ces-auth-bench-XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  "$ROOT/scripts/pg-tmp.sh" stop "$WORK/pg" >/dev/null 2>&1 || true
  if [ "$KEEP" = 1 ]; then echo "auth.sh: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

URL=$("$ROOT/scripts/pg-tmp.sh" start "$WORK/pg")
for db in off on nocache; do
  psql "$URL" -X -Atqc "CREATE DATABASE auth_$db" >/dev/null
done
url_of() { printf '%s' "${URL%/*}/auth_$1"; }

# Credentials: an admin key (ADMIN_TOKEN_FILE), an HS256 secret, an RSA key
# and its JWKS.
printf 'ces_%s\n' "$(openssl rand -base64 32 | tr '+/' '-_' | tr -d '=\n')" >"$WORK/admin.key"
openssl rand -hex 32 | tr -d '\n' >"$WORK/hs256.secret"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$WORK/rsa.pem" 2>/dev/null
MODULUS=$(openssl rsa -in "$WORK/rsa.pem" -noout -modulus 2>/dev/null | cut -d= -f2)
/usr/bin/python3 - "$MODULUS" >"$WORK/jwks.json" <<'PY'
import base64, json, sys
n = bytes.fromhex(sys.argv[1])
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
print(json.dumps({"keys": [{"kty": "RSA", "kid": "bench", "alg": "RS256",
                            "use": "sig", "n": b64(n),
                            "e": b64((65537).to_bytes(3, "big"))}]}))
PY

start_sink() { # mode http_port extra...
  local mode=$1 port=$2; shift 2
  "$SINK" --kafka-bootstrap-servers=embedded --database-url="$(url_of "$mode")" \
    --http-address=127.0.0.1 --http-port="$port" \
    --metrics-address=127.0.0.1 --metrics-port="$(free_port)" \
    --kafka-group-id="bench-$mode" --log-level=warn "$@" \
    2>"$WORK/sink-$mode.log" &
  PIDS+=($!)
}
JWT_FLAGS=(--jwt-jwks="$WORK/jwks.json" --jwt-hs256-secret-file="$WORK/hs256.secret"
           --jwt-issuer=https://idp.bench --jwt-audience=crm-events-sink)
P_OFF=$(free_port); P_ON=$(free_port); P_NOCACHE=$(free_port)
start_sink off "$P_OFF" --api-auth=off
start_sink on "$P_ON" --admin-token-file="$WORK/admin.key" "${JWT_FLAGS[@]}"
start_sink nocache "$P_NOCACHE" --admin-token-file="$WORK/admin.key" --auth-key-cache-ms=0

for p in "$P_OFF" "$P_ON" "$P_NOCACHE"; do
  for _ in $(seq 1 300); do
    curl -fs "http://127.0.0.1:$p/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$p/health" >/dev/null || { echo "auth.sh: a sink did not start"; cat "$WORK"/sink-*.log; exit 1; }
done

echo "auth.sh: $(nproc) cores, $REQUESTS requests per mode after 300 warm-up, GET /supervision, one keep-alive client"
/usr/bin/python3 - "$WORK" "$REQUESTS" "$P_OFF" "$P_ON" "$P_NOCACHE" <<'PY'
import base64, hashlib, hmac, http.client, json, subprocess, sys, time

work, n, p_off, p_on, p_nocache = sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:6])
key = open(f"{work}/admin.key").read().strip()
secret = open(f"{work}/hs256.secret").read().strip().encode()
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
claims = {"iss": "https://idp.bench", "aud": "crm-events-sink", "sub": "bench",
          "exp": int(time.time()) + 3600, "crm_role": "viewer", "crm_tenants": "*"}
def jwt(alg, kid=None):
    head = {"alg": alg, "typ": "JWT"}
    if kid:
        head["kid"] = kid
    msg = b64(json.dumps(head).encode()) + "." + b64(json.dumps(claims).encode())
    if alg == "HS256":
        sig = hmac.new(secret, msg.encode(), hashlib.sha256).digest()
    else:
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{work}/rsa.pem"],
                             input=msg.encode(), capture_output=True, check=True).stdout
    return msg + "." + b64(sig)
basic = base64.b64encode(f"bootstrap:{key}".encode()).decode()
modes = [
    ("off", p_off, None),
    ("key", p_on, "Bearer " + key),
    ("basic", p_on, "Basic " + basic),
    ("key_nocache", p_nocache, "Bearer " + key),
    ("hs256", p_on, "Bearer " + jwt("HS256")),
    ("rs256", p_on, "Bearer " + jwt("RS256", "bench")),
]
conns = {port: http.client.HTTPConnection("127.0.0.1", port, timeout=10)
         for port in {p for _, p, _ in modes}}
def once(port, auth):
    h = {"Authorization": auth} if auth else {}
    t = time.perf_counter()
    c = conns[port]
    c.request("GET", "/supervision", headers=h)
    r = c.getresponse()
    r.read()
    dt = time.perf_counter() - t
    if r.status != 200:
        raise SystemExit(f"auth.sh: status {r.status} on port {port}")
    return dt
for _ in range(300):
    for _, port, auth in modes:
        once(port, auth)
lat = {m: [] for m, _, _ in modes}
for _ in range(n):
    for m, port, auth in modes:
        lat[m].append(once(port, auth))
def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000
base = pct(lat["off"], 0.99)
print(f"{'mode':<12} {'p50_ms':>8} {'p99_ms':>8} {'p99_overhead_ms':>16}")
for m, _, _ in modes:
    p50, p99 = pct(lat[m], 0.50), pct(lat[m], 0.99)
    print(f"{m:<12} {p50:8.3f} {p99:8.3f} {p99 - base:16.3f}")
worst = max(pct(lat[m], 0.99) - base for m, _, _ in modes if m != "key_nocache")
print(f"auth_p99_overhead_ms={worst:.3f} (worst of key, basic, hs256, rs256; target <= 1)")
PY
