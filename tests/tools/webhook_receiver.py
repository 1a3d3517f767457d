#!/usr/bin/python3
"""A webhook receiver for the e2e tests (Python stdlib only).

Listens on 127.0.0.1 (a free port, written to --port-file), records every
POST as one JSON line in --log and verifies its Standard Webhooks signature
on its own (hmac/hashlib/base64 with --secret, whsec_<base64>):

  {"path": ..., "webhook_id": ..., "webhook_timestamp": ...,
   "webhook_signature": ..., "content_type": ..., "verified": true|false,
   "body": "<the body as text>", "answered": <status sent>}

--fail-first N  answer 500 to the first N requests (then 200)
--sleep S       wait S seconds before answering each request (a slow
                receiver; the client may give up first)
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def verify(secret, msg_id, timestamp, body, header):
    key = base64.b64decode(secret[len("whsec_"):])
    content = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(
        hmac.new(key, content, hashlib.sha256).digest()).decode()
    for sig in header.split(" "):
        version, _, value = sig.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--sleep", type=float, default=0.0)
    args = ap.parse_args()
    lock = threading.Lock()
    seen = [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(n)
            with lock:
                seen[0] += 1
                status = 500 if seen[0] <= args.fail_first else 200
            if args.sleep > 0:
                time.sleep(args.sleep)
            msg_id = self.headers.get("webhook-id", "")
            ts = self.headers.get("webhook-timestamp", "")
            sig = self.headers.get("webhook-signature", "")
            rec = {
                "path": self.path,
                "webhook_id": msg_id,
                "webhook_timestamp": ts,
                "webhook_signature": sig,
                "content_type": self.headers.get("Content-Type", ""),
                "verified": verify(args.secret, msg_id, ts, body, sig),
                "body": body.decode("utf-8", "replace"),
                "answered": status,
            }
            with lock:
                with open(args.log, "a") as f:
                    f.write(json.dumps(rec) + "\n")
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                pass  # the client gave up (timeout)

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
