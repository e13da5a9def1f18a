"""module_utils/_retry: how long the Statuspage and chat clients wait before sending a request again."""

from __future__ import annotations

import email.utils
import time

from ansible_collections.runbook.release.plugins.module_utils._retry import retry_delay


def test_retry_after_in_seconds_capped():
    assert retry_delay({"Retry-After": "3"}, 1, 30.0, 8.0) == 3.0
    assert retry_delay({"Retry-After": "600"}, 1, 30.0, 8.0) == 30.0
    assert retry_delay({"Retry-After": "-5"}, 1, 30.0, 8.0) == 0.0


def test_retry_after_as_an_http_date():
    soon = email.utils.formatdate(time.time() + 5, usegmt=True)
    assert 3.0 <= retry_delay({"Retry-After": soon}, 1, 30.0, 8.0) <= 5.0


def test_without_a_readable_retry_after_the_backoff_doubles_up_to_its_cap():
    assert retry_delay({"Retry-After": "soon"}, 2, 30.0, 8.0) == 2.0
    assert [retry_delay(None, attempt, 30.0, 8.0) for attempt in (1, 2, 3, 4, 5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert retry_delay({}, 7, 60.0, 30.0) == 30.0
