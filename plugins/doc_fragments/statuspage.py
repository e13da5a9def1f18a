# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the Statuspage modules (spec: module_utils/_statuspage.connection_argument_spec)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  api_key:
    description:
      - API key of a Statuspage user allowed to manage the page (Statuspage, user menu, API info).
      - When not set, the value of the E(STATUSPAGE_API_KEY) environment variable of the task is used; the task
        fails before any request when neither is set.
      - The key is sent only in the C(Authorization) header. It never appears in results, errors, warnings or
        logs, and the pacing file that paces requests is named after a hash of its first characters, not after
        the key.
    type: str
  page_id:
    description:
      - Id of the status page (Statuspage, API info, Page IDs), for example C(kctbh9vrtdwd).
    type: str
    required: true
  api_url:
    description:
      - Base URL of the Statuspage REST API v1, without a trailing path beyond the version.
      - Point it at a stand-in for tests, for example the sandbox's C(http://127.0.0.1:8090/v1).
    type: str
    default: https://api.statuspage.io/v1
  timeout:
    description:
      - Seconds to wait for each API answer.
    type: int
    default: 30
  validate_certs:
    description:
      - Verify the API's TLS certificate. Set to V(false) only for a test endpoint.
    type: bool
    default: true
  retries:
    description:
      - How many times a request is sent again after a rate-limit answer (HTTP 420 or 429), a server error (5xx) or
        a connection error, waiting as C(Retry-After) says or else 1, 2, 4, ... seconds (at most 30).
      - A write that failed in a way that may still have applied it (5xx, lost connection) is checked with a read
        before it is sent again, so an incident is never created or posted twice.
      - When the retries are exhausted the task fails with the HTTP status, the endpoint path and the answer.
    type: int
    default: 5
  requests_per_second:
    description:
      - Most requests per second sent with this API key to this O(api_url) from this host, on average over
        O(rate_limit_window), counted across tasks and processes. A small lock file in the temp directory holds
        the times of the requests of the last window (nothing else).
      - Statuspage allows 1 request per second per key, measured over a 60-second rolling window. So up to 60
        requests go out at once, and the 61st waits until the first is a minute old. An announcement of a few
        requests is not spread over seconds, and a long runbook never meets a 429.
      - Raise it only for a stand-in or an account with a higher limit.
    type: float
    default: 1.0
  rate_limit_window:
    description:
      - The rolling window, in seconds, over which the API measures O(requests_per_second).
      - V(1) spaces every request by 1/O(requests_per_second) seconds (no bursts).
    type: float
    default: 60
notes:
  - Requests go out from the host the task runs on, usually the controller (C(delegate_to) C(localhost)).
"""
