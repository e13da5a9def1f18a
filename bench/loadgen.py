"""Bounded HTTP load on a loopback URL, for zero-downtime tests and benchmarks.

    python bench/loadgen.py --url http://127.0.0.1:8080/api/version --workers 4 --max-seconds 120 \
        --stop-file /tmp/stop --out /tmp/load.json

Each worker sends requests one after another (or --rate per second each) until the stop file appears (and at
least --min-requests were sent), --max-seconds pass or --max-requests are sent (all bounded), then the totals are
written as JSON. Only loopback URLs are accepted.
"""

import argparse
import http.client
import ipaddress
import json
import os
import sys
import threading
import time
import urllib.parse


def loopback_only(url):
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if parsed.scheme != "http" or not ok:
        raise SystemExit("loadgen: only http:// URLs on a loopback address are allowed, not %r" % url)
    return parsed


def worker(parsed, deadline, stop_file, budget, totals, lock, min_requests=0, rate=0.0):
    path = parsed.path or "/"
    gap = 1.0 / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    while time.monotonic() < deadline and (totals["requests"] < min_requests
                                           or not os.path.exists(stop_file or "/nonexistent/stop")):
        with lock:
            if totals["requests"] >= budget:
                return
            totals["requests"] += 1
        if gap:  # paced: one request every gap seconds, never a burst to catch up after a slow answer
            now = time.monotonic()
            if next_at > now:
                time.sleep(next_at - now)
            next_at = max(next_at, now) + gap
        started = time.monotonic()
        status, error = None, None
        try:
            conn = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=10)
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
            conn.close()
        except (OSError, http.client.HTTPException) as exc:
            error = "%s: %s" % (type(exc).__name__, exc)
        elapsed = (time.monotonic() - started) * 1000
        with lock:
            totals["latencies"].append(elapsed)
            key = str(status) if status else "error"
            totals["status"][key] = totals["status"].get(key, 0) + 1
            if status is None or status >= 400:
                totals["failed"] += 1
                if len(totals["samples"]) < 10:
                    totals["samples"].append(error or "HTTP %s" % status)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--max-requests", type=int, default=200000)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="requests per second per worker (0, the default: one after another, as fast as answered)")
    parser.add_argument("--stop-file")
    parser.add_argument("--min-requests", type=int, default=0,
                        help="keep going after the stop file appears until this many requests were sent")
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if not args.rate >= 0:  # also rejects nan
        parser.error("--rate must be 0 (no pause) or a positive number of requests per second, not %s" % args.rate)
    parsed = loopback_only(args.url)
    totals = {"requests": 0, "failed": 0, "status": {}, "samples": [], "latencies": []}
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + args.max_seconds
    threads = [threading.Thread(target=worker, args=(parsed, deadline, args.stop_file, args.max_requests, totals,
                                                     lock, args.min_requests, args.rate)) for _i in range(args.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies = sorted(totals.pop("latencies"))
    totals["wall_s"] = round(time.monotonic() - started, 2)
    totals["p95_ms"] = round(latencies[int(len(latencies) * 0.95) - 1], 1) if latencies else None
    totals["workers"] = args.workers
    text = json.dumps(totals, sort_keys=True)
    if args.out:
        with open(args.out + ".tmp", "w") as handle:
            handle.write(text)
        os.replace(args.out + ".tmp", args.out)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
