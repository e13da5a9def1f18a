"""module_utils/_chat: the pure parts - how a webhook URL is shown, checked and scrubbed, and the payload.
Posting itself is tested against the webhook stand-in in tests/unit/plugins/modules/."""

from __future__ import annotations

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _chat as chat

URL = "https://hooks.slack.com/services/T0001/B0002/sEcReTtOkEn"


def test_the_endpoint_keeps_scheme_host_and_port_only():
    assert chat.endpoint_of(URL) == "https://hooks.slack.com/..."
    assert chat.endpoint_of("http://127.0.0.1:8091/hooks/x?token=y") == "http://127.0.0.1:8091/..."


@pytest.mark.parametrize("url, problem", [
    (URL, None),
    ("http://127.0.0.1:8091/hooks/releases?token=x", None),
    ("", "is not an http(s) URL"),
    ("hooks.slack.com/services/x", "is not an http(s) URL"),
    ("https://u:p@hooks.slack.com/x", "carries user information"),
    ("https://hooks.slack.com/x#frag", "has a #fragment"),
])
def test_check_url(url, problem):
    found = chat.check_url(url)
    assert (found is None) if problem is None else (problem in found)


def test_the_client_scrubs_the_url_and_its_path_from_any_text():
    client = chat.WebhookClient(URL)
    text = client._scrub("failed %s and /services/T0001/B0002/sEcReTtOkEn" % URL)
    assert "sEcReTtOkEn" not in text
    assert text == "failed https://hooks.slack.com/... and /..."


def test_payload_and_markdown_section():
    assert chat.build_payload("hi") == {"text": "hi"}
    assert chat.build_payload("hi", [{"type": "divider"}]) == {"text": "hi", "blocks": [{"type": "divider"}]}
    assert chat.build_payload("x" * 50000)["text"] == "x" * chat.MAX_TEXT
    assert chat.markdown_section("*b*") == {"type": "section", "text": {"type": "mrkdwn", "text": "*b*"}}
