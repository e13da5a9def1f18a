"""Docker HEALTHCHECK probe for the demo services (standard library only).

api/web: GET /health must answer 200 within 2 s (liveness only, no database).
worker:  the heartbeat file must have been written within the last 10 s.
Exit 0 means healthy, 1 unhealthy; the printed line ends up in `docker inspect`.
"""

import http.client
import os
import sys
import time
import urllib.error
import urllib.request

HEARTBEAT_FILE = "/tmp/worker-heartbeat"
HEARTBEAT_MAX_AGE_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 2.0


def check_http(port: str) -> tuple[bool, str]:
    # An empty ProxyHandler ignores any http_proxy in the environment:
    # the probe must reach this container, not a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    url = f"http://127.0.0.1:{port}/health"
    try:
        with opener.open(url, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status == 200, f"{url} answered {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"{url} answered {exc.code}"
    except (OSError, http.client.HTTPException, ValueError) as exc:
        return False, f"{url} failed: {exc}"


def check_heartbeat() -> tuple[bool, str]:
    try:
        age = time.time() - os.stat(HEARTBEAT_FILE).st_mtime
    except OSError:
        return False, f"{HEARTBEAT_FILE} missing"
    return age < HEARTBEAT_MAX_AGE_SECONDS, f"heartbeat {age:.1f}s old"


def main() -> int:
    service = os.environ.get("SERVICE_NAME", "")
    if service in ("api", "web"):
        healthy, detail = check_http(os.environ.get("APP_PORT") or "8000")
    elif service == "worker":
        healthy, detail = check_heartbeat()
    else:
        healthy, detail = False, f"unknown SERVICE_NAME {service!r}"
    print(("healthy: " if healthy else "unhealthy: ") + detail)
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
