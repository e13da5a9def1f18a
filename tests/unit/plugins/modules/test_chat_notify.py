"""runbook.release.chat_notify, run as Ansible runs it (a subprocess with its arguments file) against a real process
of the chat webhook stand-in (sandbox/fakes/saas.py) on ephemeral ports. No HTTP is mocked: what the module sent is
read back from the stand-in's /_sandbox/requests, and faults are injected through /_sandbox/faults.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[4]
SERVER = REPO / "sandbox" / "fakes" / "saas.py"
MODULE = "ansible_collections.runbook.release.plugins.modules.chat_notify"
# The hook's name is the secret part of a webhook URL, as in Slack's /services/T../B../<token>.
TOKEN = "planted-chat-token-7f3e9a1c"


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("chat")
    (workdir / "keys").write_text("unused-key\n")
    with open(workdir / "fake.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--host", "127.0.0.1", "--statuspage-port", "0", "--webhook-port", "0",
             "--keys-file", str(workdir / "keys"), "--page-id", "rbsbx0000001"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        port = json.loads(proc.stdout.readline())["webhook_port"]
        yield {"base": f"http://127.0.0.1:{port}", "workdir": workdir}
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture
def hook(fake):
    requests.post(fake["base"] + "/_sandbox/reset", timeout=5)
    return fake


def records(hook):
    return requests.get(hook["base"] + "/_sandbox/requests", timeout=5).json()


def fault(hook, status, count):
    spec = {"status": status, "count": count}
    assert requests.post(hook["base"] + "/_sandbox/faults", json=spec, timeout=5).status_code == 201


def run(hook, check=False, diff=False, env=None, **args):
    """Run the module like Ansible does; return its result and everything it printed."""
    args.setdefault("webhook_url", f"{hook['base']}/hooks/{TOKEN}")
    module_args = {"_ansible_check_mode": check, "_ansible_diff": diff, **args}
    if module_args["webhook_url"] is None:
        del module_args["webhook_url"]
    args_file = hook["workdir"] / f"args-{time.monotonic_ns()}.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    environ = dict(os.environ, PYTHONPATH=str(REPO / "collections"), **(env or {}))
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                          env=environ, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    try:
        result = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"module printed no JSON (rc={proc.returncode}):\n{output}")
    assert TOKEN not in output, "the webhook URL's token leaked into the module's output"
    return result


def test_posts_text_and_a_markdown_section(hook):
    result = run(hook, text="Deploying v1.2.3 to production", markdown="*Deploying v1.2.3*\nChanges: search")
    assert result["changed"] and result["posted"] and not result.get("failed")
    assert (result["status"], result["response"], result["attempts"]) == (200, "ok", 1)
    assert result["endpoint"] == hook["base"] + "/..."
    assert result["msg"] == "posted the message to %s/..." % hook["base"]
    [posted] = records(hook)
    assert posted["method"] == "POST" and posted["headers"]["content-type"].startswith("application/json")
    assert posted["body"] == {"text": "Deploying v1.2.3 to production", "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "*Deploying v1.2.3*\nChanges: search"}}]}


def test_text_defaults_to_the_first_markdown_line_and_long_markdown_is_cut(hook):
    result = run(hook, markdown="*Rolled back* v1.2.4\n" + "x" * 5000)
    assert result["text"] == "Rolled back v1.2.4"
    body = records(hook)[0]["body"]
    assert body["text"] == "Rolled back v1.2.4"
    section = body["blocks"][0]["text"]["text"]
    assert len(section) == 3000 and section.endswith("...")  # Slack's limit for a section's text


def test_blocks_are_sent_as_given(hook):
    blocks = [{"type": "header", "text": {"type": "plain_text", "text": "Release"}}]
    run(hook, text="Release", blocks=blocks)
    assert records(hook)[0]["body"] == {"text": "Release", "blocks": blocks}


def test_check_mode_posts_nothing_and_diff_shows_the_message(hook):
    result = run(hook, check=True, diff=True, text="Deploying v1.2.3")
    assert result["changed"] and not result["posted"] and result["attempts"] == 0
    assert result["msg"].startswith("check mode: would post")
    assert result["diff"]["before"] == "" and result["diff"]["after"] == "Deploying v1.2.3\n"
    assert records(hook) == []


def test_every_post_is_a_new_message(hook):
    first, second = run(hook, text="one"), run(hook, text="one")
    assert first["changed"] and second["changed"]
    assert len(records(hook)) == 2


def test_retries_a_5xx_and_a_429_after_its_retry_after(hook):
    fault(hook, 503, 1)
    fault(hook, 429, 1)  # the stand-in sends Retry-After: 1
    started = time.monotonic()
    result = run(hook, text="after faults")
    assert result["posted"] and result["attempts"] == 3
    assert time.monotonic() - started >= 2.0  # 1 s backoff after the 503, then the 429's Retry-After
    assert [r["status"] for r in records(hook)] == [503, 429, 200]


def test_gives_up_after_the_retries_with_the_status_and_a_hint(hook):
    fault(hook, 500, 3)
    result = run(hook, text="down", retries=1)
    assert result["failed"] and not result["posted"] and not result["changed"]
    assert result["attempts"] == 2 and result["status"] == 500
    assert result["msg"] == ("the chat webhook %s/... answered HTTP 500 after 2 attempts: internal_error; the chat "
                             "service may be down: retry later or raise retries" % hook["base"])


def test_a_refused_message_is_not_retried(hook):
    result = run(hook, webhook_url=f"{hook['base']}/nohooks/{TOKEN}", text="lost")
    assert result["failed"] and result["attempts"] == 1 and result["status"] == 404
    assert "answered HTTP 404: no_service; the webhook does not exist" in result["msg"]
    assert len(records(hook)) == 1


def test_no_answer_names_the_endpoint_not_the_url(hook):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    result = run(hook, webhook_url=f"http://127.0.0.1:{port}/hooks/{TOKEN}", text="x", retries=0, timeout=2)
    assert result["failed"] and result["status"] is None and result["attempts"] == 1
    assert result["msg"].startswith("the chat webhook http://127.0.0.1:%d/... did not answer: " % port)
    assert "check the URL's host, the network and the timeout" in result["msg"]


@pytest.mark.parametrize("args, expected", [
    ({"webhook_url": "ftp://hooks.example.com/x"}, "webhook_url (not shown) is not an http(s) URL"),
    ({"webhook_url": f"https://user:{TOKEN}@hooks.example.com/x"}, "carries user information before the host"),
    ({"webhook_url": None}, "missing required arguments: webhook_url"),
    ({"timeout": 0}, "timeout=0 is too small: give at least 1"),
    ({"retries": -1}, "retries=-1 is too small: give at least 0"),
    ({"text": ""}, "nothing to post: give text, markdown or blocks"),
    ({"markdown": "x", "blocks": [{"type": "divider"}]}, "parameters are mutually exclusive: markdown|blocks"),
])
def test_bad_input_is_refused_before_anything_is_sent(hook, args, expected):
    args = dict({"text": "hello"}, **args)
    result = run(hook, **args)
    assert result["failed"] and expected in result["msg"], result["msg"]
    assert records(hook) == []


def test_the_url_can_come_from_the_environment(hook):
    result = run(hook, webhook_url=None, text="from env",
                 env={"RUNBOOK_RELEASE_CHAT_WEBHOOK_URL": f"{hook['base']}/hooks/{TOKEN}"})
    assert result["posted"] and records(hook)[0]["body"]["text"] == "from env"
