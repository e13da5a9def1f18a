# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""How long an HTTP client waits before it sends a request again (Statuspage, chat webhooks).

Standard library only: this runs on bare targets.
"""

from __future__ import annotations

import email.utils
import time


def retry_delay(headers, attempt, max_retry_after, max_backoff):
    """Seconds to wait before attempt ``attempt + 1``.

    The answer's ``Retry-After`` when it sent one - seconds or an HTTP date, at most ``max_retry_after`` - else
    exponential backoff: 1, 2, 4, ... seconds, at most ``max_backoff``.
    """
    value = ((headers.get("Retry-After") if headers is not None else None) or "").strip()
    if value:
        try:
            return min(max(float(value), 0.0), max_retry_after)
        except ValueError:
            try:
                moment = email.utils.parsedate_to_datetime(value)
                return min(max(moment.timestamp() - time.time(), 0.0), max_retry_after)
            except (TypeError, ValueError, IndexError):
                pass
    return min(2.0 ** (attempt - 1), max_backoff)
