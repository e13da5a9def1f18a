"""An HTTP pass-through to a real S3 endpoint that refuses one kind of request, for the pg_backup integration test.

Every request is forwarded unchanged to --upstream (the sandbox's S3) and its answer returned, except requests whose
method and query match --fail-method and --fail-query, which get 403 AccessDenied (not retried by boto3). So a
multipart upload really starts in S3, its second part is refused, and whatever the client does about it (abort the
upload) really reaches S3 too. Writes {"port", "pid"} to --state-file once listening, logs one JSON line per request
to --log, and exits by itself after --max-seconds.
"""

import argparse
import http.client
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def make_handler(upstream, fail_method, fail_query, log):
    target = urlsplit(upstream)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def read_body(self):
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";")[0], 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def handle_any(self):
            body = self.read_body()
            query = urlsplit(self.path).query
            if self.command == fail_method and fail_query in query:
                status, headers, payload = 403, [("Content-Type", "application/xml")], (
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>AccessDenied</Code>"
                    b"<Message>refused by the test proxy</Message></Error>")
            else:
                conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers_out = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding",)}
                headers_out["Content-Length"] = str(len(body))
                conn.request(self.command, self.path, body=body, headers=headers_out)
                response = conn.getresponse()
                payload = response.read()
                status = response.status
                headers = [(k, v) for k, v in response.getheaders()
                           if k.lower() not in ("transfer-encoding", "content-length", "connection")]
                conn.close()
            with lock:
                log.write(json.dumps({"method": self.command, "path": self.path, "status": status}) + "\n")
                log.flush()
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any

    return Handler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--fail-method", default="PUT")
    parser.add_argument("--fail-query", default="partNumber=2")
    parser.add_argument("--state-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--max-seconds", type=float, default=300)
    args = parser.parse_args()
    with open(args.log, "a") as log:
        handler = make_handler(args.upstream, args.fail_method, args.fail_query, log)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        tmp = args.state_file + ".tmp"
        with open(tmp, "w") as handle:
            json.dump({"port": server.server_address[1], "pid": os.getpid()}, handle)
        os.rename(tmp, args.state_file)
        threading.Timer(args.max_seconds, server.shutdown).start()
        started = time.monotonic()
        server.serve_forever()
        log.write(json.dumps({"stopped_after_s": round(time.monotonic() - started, 1)}) + "\n")


if __name__ == "__main__":
    main()
