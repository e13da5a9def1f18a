"""A pass-through to the sandbox registry that demands authentication, for the image_verify integration test.

The sandbox registry has no auth. This puts a real HTTP front on it that speaks what authenticated registries speak:

- ``--mode basic``: every /v2/ request needs ``Authorization: Basic`` with --user and the password in
  --password-file, else 401 with ``WWW-Authenticate: Basic realm="..."``.
- ``--mode bearer``: every /v2/ request needs ``Authorization: Bearer <token>``, else 401 with
  ``WWW-Authenticate: Bearer realm="http://127.0.0.1:<port>/token",service="it-registry",scope="repository:<repo>:pull"``
  (the Docker Hub / distribution token flow). GET /token issues a fresh random token for that scope when the request
  carries the right basic credentials, or none at all with --anonymous-tokens; a token is only good for its scope.

Authorized requests are forwarded unchanged (minus Authorization) to --upstream and its answer returned. Writes
{"port", "pid"} to --state-file once listening, one JSON line per request to --log (method, path, the auth scheme
used, status - never a credential), every token issued to --tokens (so the test can search the module's output for
them), and exits by itself after --max-seconds.
"""

import argparse
import base64
import http.client
import json
import os
import re
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

REPO_RE = re.compile(r"^/v2/(.+?)/(manifests|blobs|tags)/")


def make_handler(args, password):
    upstream = urlsplit(args.upstream)
    lock = threading.Lock()
    tokens = {}  # token -> scope

    def log(entry):
        with lock:
            with open(args.log, "a") as handle:
                handle.write(json.dumps(entry) + "\n")

    def basic_ok(header):
        if not header.startswith("Basic "):
            return False
        try:
            user, _sep, given = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user, args.user) and secrets.compare_digest(given, password)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args):
            pass

        def reply(self, status, headers, body):
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def deny(self, scheme, path):
            repo = REPO_RE.match(path)
            if scheme == "basic":
                challenge = 'Basic realm="it-registry"'
            else:
                challenge = 'Bearer realm="http://127.0.0.1:%d/token",service="it-registry"' % self.server.server_port
                if repo:
                    challenge += ',scope="repository:%s:pull"' % repo.group(1)
            body = json.dumps({"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}).encode()
            self.reply(401, [("WWW-Authenticate", challenge), ("Content-Type", "application/json")], body)
            return 401

        def token(self):
            query = parse_qs(urlsplit(self.path).query)
            auth = self.headers.get("Authorization", "")
            if not (basic_ok(auth) or (args.anonymous_tokens and not auth)):
                self.reply(401, [("Content-Type", "application/json")], b'{"details": "bad credentials"}')
                return 401, "basic" if auth else "none", None
            scope = (query.get("scope") or [""])[0]
            value = secrets.token_urlsafe(24)
            with lock:
                tokens[value] = scope
                with open(args.tokens, "a") as handle:
                    handle.write(value + "\n")
            self.reply(200, [("Content-Type", "application/json")],
                       json.dumps({"token": value, "access_token": value, "expires_in": 300}).encode())
            return 200, "basic" if auth else "none", scope

        def forward(self):
            conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("authorization", "host")}
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
            body = resp.read()
            passed = [(k, v) for k, v in resp.getheaders()
                      if k.lower() not in ("content-length", "transfer-encoding", "connection")]
            self.reply(resp.status, passed, body)
            conn.close()
            return resp.status

        def handle_any(self):
            path = urlsplit(self.path).path
            auth = self.headers.get("Authorization", "")
            scheme = auth.split(" ", 1)[0].lower() if auth else "none"
            scope = None
            if path == "/token":
                status, scheme, scope = self.token()
            elif args.mode == "basic":
                status = self.forward() if basic_ok(auth) else self.deny("basic", path)
            else:
                repo = REPO_RE.match(path)
                granted = tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
                needed = "repository:%s:pull" % repo.group(1) if repo else None
                ok = granted is not None and (needed is None or needed in granted.split(" "))
                status = self.forward() if ok else self.deny("bearer", path)
            log({"method": self.command, "path": path, "auth": scheme, "scope": scope, "status": status})

        do_GET = do_HEAD = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["basic", "bearer"], required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--user", default="it-user")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--anonymous-tokens", action="store_true")
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    with open(args.password_file) as handle:
        password = handle.read().strip()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args, password))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    tmp = args.state_file + ".tmp"
    with open(tmp, "w") as handle:
        json.dump({"port": server.server_port, "pid": os.getpid()}, handle)
    os.rename(tmp, args.state_file)
    time.sleep(args.max_seconds)
    server.shutdown()


if __name__ == "__main__":
    main()
