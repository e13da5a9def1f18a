# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Posting to a Slack-compatible incoming webhook, for runbook.release modules.

An incoming webhook URL is a credential: whoever has it can post to the channel. So it never appears in a
message, a result or a log; errors name the endpoint as ``scheme://host/...``. A post is retried when a second try
may pass - no answer, HTTP 429 (after its Retry-After) and 5xx - and not when the webhook refused the message
(4xx other than 429), which a retry cannot fix.
Standard library and ansible.module_utils only: this runs on bare targets.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit

from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.runbook.release.plugins.module_utils._retry import retry_delay

USER_AGENT = "runbook.release-chat/0.1.0"
MAX_RETRY_AFTER_S = 30.0
MAX_BACKOFF_S = 8.0
MAX_SHOWN_BODY = 300
# Slack's section blocks take at most 3,000 characters of text; its top-level text, 40,000.
MAX_BLOCK_TEXT = 3000
MAX_TEXT = 40000

# What a webhook's error answers mean, and what to do (Slack's documented error strings).
HINTS = {
    "invalid_payload": "the message is not valid JSON with text or blocks; check text and blocks",
    "invalid_blocks": "a block is malformed; check blocks against Slack's Block Kit",
    "invalid_blocks_format": "blocks must be a list of block objects",
    "no_text": "give text (or blocks)",
    "no_service": "the webhook does not exist (revoked or mistyped): create a new one and update the URL",
    "no_service_id": "the webhook URL is incomplete: copy it again from the app's settings",
    "no_team": "the workspace of the webhook is gone or the URL is incomplete",
    "team_disabled": "the workspace of the webhook is disabled",
    "action_prohibited": "an admin restricted posting to this channel",
    "posting_to_general_channel_denied": "only admins may post to this channel: pick another channel",
    "channel_not_found": "the webhook's channel is gone: create a new webhook",
    "channel_is_archived": "the webhook's channel is archived: unarchive it or create a new webhook",
    "too_many_attachments": "send at most 100 attachments",
}


class ChatError(Exception):
    """A post that did not go through; ``msg`` says what and what to do, never the URL."""

    def __init__(self, msg, status=None, response=None, attempts=0):
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.response = response
        self.attempts = attempts


def endpoint_of(url):
    """The webhook URL without its secret part, for messages: ``https://hooks.slack.com/...``."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if parts.port:
        host = "%s:%d" % (host, parts.port)
    return "%s://%s/..." % (parts.scheme or "?", host)


def check_url(url):
    """None when the URL can be a webhook, else what is wrong with it (without the URL)."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not an http(s) URL"
    if "@" in parts.netloc:
        return "carries user information before the host; use the webhook URL as the chat app gives it"
    if parts.fragment:
        return "has a #fragment; use the webhook URL as the chat app gives it"
    return None


def build_payload(text, blocks=None, extra=None):
    """The JSON body: Slack's ``text`` (the notification and fallback), optional ``blocks``, more fields."""
    payload = dict(extra or {})
    if text:
        payload["text"] = text[:MAX_TEXT]
    if blocks:
        payload["blocks"] = blocks
    return payload


def markdown_section(markdown):
    """One section block of mrkdwn text, cut to what Slack accepts."""
    if len(markdown) > MAX_BLOCK_TEXT:
        markdown = markdown[:MAX_BLOCK_TEXT - 3] + "..."
    return {"type": "section", "text": {"type": "mrkdwn", "text": markdown}}


class WebhookClient:
    """Posts JSON to one incoming webhook URL, with bounded retries; silent about the URL."""

    def __init__(self, url, timeout=10, retries=2, validate_certs=True, sleep=time.sleep):
        self._url = url
        self.endpoint = endpoint_of(url)
        self.timeout = timeout
        self.retries = retries
        self.validate_certs = validate_certs
        self._sleep = sleep
        self.attempts = 0

    def _scrub(self, text):
        text = text if isinstance(text, str) else str(text)
        if self._url:
            text = text.replace(self._url, self.endpoint)
            path = urlsplit(self._url).path
            if len(path) > 1:
                text = text.replace(path, "/...")
        return text

    def _send(self, body):
        headers = {"Content-Type": "application/json; charset=utf-8"}
        try:
            resp = open_url(self._url, data=body, headers=headers, method="POST", timeout=self.timeout,
                            validate_certs=self.validate_certs, http_agent=USER_AGENT,
                            follow_redirects="none", use_netrc=False)
            return resp.getcode(), resp.headers, resp.read(), None
        except HTTPError as exc:
            try:
                answer = exc.read()
            except (OSError, http.client.HTTPException):
                answer = b""
            return exc.code, exc.headers, answer, None
        except SSLValidationError as exc:
            raise ChatError("TLS verification of the chat webhook %s failed: %s; fix its certificate, or set "
                            "validate_certs=false for a test endpoint only" % (self.endpoint, self._scrub(exc)),
                            attempts=self.attempts + 1) from None
        except (URLError, UrlsConnectionError, socket.timeout, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", None) or exc
            return None, None, b"", "%s: %s" % (type(exc).__name__, self._scrub(reason))

    def post(self, payload):
        """Post once, retrying what may pass on a second try; return (status, answer text) or raise ChatError."""
        body = json.dumps(payload).encode("utf-8")
        attempt = 0
        while True:
            attempt += 1
            self.attempts = attempt
            status, headers, raw, error = self._send(body)
            text = self._scrub(raw.decode("utf-8", errors="replace").strip())[:MAX_SHOWN_BODY]
            if status is not None and 200 <= status < 300:
                return status, text
            retryable = status is None or status == 429 or status >= 500
            if not retryable or attempt > self.retries:
                raise self._failure(status, text, error, attempt)
            self._sleep(retry_delay(headers, attempt, MAX_RETRY_AFTER_S, MAX_BACKOFF_S))

    def _failure(self, status, text, error, attempts):
        tries = " after %d attempts" % attempts if attempts > 1 else ""
        if status is None:
            return ChatError("the chat webhook %s did not answer%s: %s; check the URL's host, the network and "
                             "the timeout, or raise retries" % (self.endpoint, tries, error), attempts=attempts)
        if status == 429:
            hint = "rate limited: post less often or raise retries"
        elif status >= 500:
            hint = "the chat service may be down: retry later or raise retries"
        else:
            hint = HINTS.get(text, "check the webhook URL (not shown) and the message")
        return ChatError("the chat webhook %s answered HTTP %s%s: %s; %s"
                         % (self.endpoint, status, tries, text or "(empty body)", hint),
                         status=status, response=text, attempts=attempts)
