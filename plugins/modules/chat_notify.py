#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: chat_notify
short_description: Post a message to a Slack-compatible incoming webhook, retrying what may pass and never showing the URL
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Posts one message - a notification line in O(text) and, optionally, a formatted body in O(markdown) or raw Block
    Kit O(blocks) - as JSON to an incoming webhook (Slack, or anything that accepts Slack's payload, such as
    Mattermost, Rocket.Chat and Discord's C(/slack) endpoints). The runbooks' M(runbook.release.announce) and
    C(handoff) roles post with it.
  - An incoming webhook URL is a credential. It is never shown, not in the result, errors or logs. Errors name
    the endpoint as C(scheme://host/...).
  - A post that may pass on a second try is retried up to O(retries) times - no answer, HTTP 429 (after the
    C(Retry-After) it sends, at most 30 s) and 5xx (after 1, 2, 4... s). A refused message (another 4xx, such as
    C(invalid_payload) or C(channel_is_archived)) fails at once with the webhook's error and what to do.
  - Every post is a new message, so the module always reports C(changed) when it posts.
extends_documentation_fragment:
  - runbook.release.attributes
options:
  webhook_url:
    description:
      - The incoming webhook URL, for example C(https://hooks.slack.com/services/T000/B000/XXXX).
      - Read it from a vault variable or a file lookup; the environment variable E(RUNBOOK_RELEASE_CHAT_WEBHOOK_URL)
        works instead.
    type: str
    required: true
  text:
    description:
      - The message's plain text. It is the notification line and what clients without block support show.
      - Without it, the first line of O(markdown) (without C(*) marks) is used. One of O(text), O(markdown) and
        O(blocks) is required.
    type: str
  markdown:
    description:
      - A formatted body (Slack C(mrkdwn)), sent as one section block. Slack takes at most 3,000 characters in a
        section; a longer body is cut, ending in C(...).
    type: str
  blocks:
    description: Block Kit blocks, sent as they are, instead of O(markdown).
    type: list
    elements: dict
  timeout:
    description: Seconds to wait for the webhook's answer, per attempt.
    type: int
    default: 10
  retries:
    description: How many times a post is sent again after no answer, HTTP 429 or a 5xx.
    type: int
    default: 2
  validate_certs:
    description: Verify the webhook's TLS certificate. Set to V(false) only for a test endpoint.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Posts nothing; returns the message that would be posted, with C(changed=true).
  diff_mode:
    support: full
    details: Shows the message that is (or would be) posted.
  idempotent:
    support: none
    details: Every post is a new message in the channel.
notes:
  - Requests go out from the host the task runs on, usually the controller (C(delegate_to) C(localhost)).
  - Set C(no_log) only if the message itself is secret; the URL is hidden without it.
seealso:
  - module: runbook.release.statuspage_update
    description: The status page side of an announcement.
  - name: Slack incoming webhooks
    description: The payload and the error answers this module follows.
    link: https://api.slack.com/messaging/webhooks
"""

EXAMPLES = r"""
- name: Announce the start of a release
  runbook.release.chat_notify:
    webhook_url: "{{ release_chat_webhook_url }}"
    text: "Deploying v1.2.3 to production"
    markdown: |
      *Deploying v1.2.3 to production*
      Changes: faster search, new export button.
      Monitoring: https://grafana.example.com/d/release
  delegate_to: localhost
  run_once: true

- name: Post the on-call handoff, without failing the play when chat is down
  runbook.release.chat_notify:
    webhook_url: "{{ release_chat_webhook_url }}"
    text: "{{ handoff_summary }}"
    retries: 3
  delegate_to: localhost
  register: handoff_post
  failed_when: false

- name: Warn when it did not go out (the message names the endpoint, never the URL)
  ansible.builtin.debug:
    msg: "WARNING: the handoff was not posted - {{ handoff_post.msg }}"
  when: not handoff_post.posted
"""

RETURN = r"""
posted:
  description: Whether the webhook accepted the message (false in check mode and on failure).
  returned: always
  type: bool
  sample: true
status:
  description: The HTTP status of the last answer; null when there was none.
  returned: when a post was attempted
  type: int
  sample: 200
response:
  description: The webhook's answer (Slack answers C(ok), or an error code such as C(invalid_payload)), cut to 300
    characters.
  returned: when a post was attempted
  type: str
  sample: ok
attempts:
  description: How many times the message was sent (1 when the first attempt passed).
  returned: always
  type: int
  sample: 1
endpoint:
  description: The webhook's scheme and host, without the secret path.
  returned: always
  type: str
  sample: https://hooks.slack.com/...
text:
  description: The message's plain text as sent.
  returned: always
  type: str
  sample: Deploying v1.2.3 to production
duration_s:
  description: Seconds the post took, retries included.
  returned: always
  type: float
  sample: 0.05
"""

import time

from ansible.module_utils.basic import AnsibleModule, env_fallback

from ansible_collections.runbook.release.plugins.module_utils._chat import (
    ChatError,
    WebhookClient,
    build_payload,
    check_url,
    endpoint_of,
    markdown_section,
)

URL_ENV = "RUNBOOK_RELEASE_CHAT_WEBHOOK_URL"


class ChatNotifier(object):
    """Checks the input, then posts (or, in check mode, says what it would post)."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.result = {"changed": False, "posted": False, "attempts": 0, "text": "", "duration_s": 0.0,
                       "endpoint": endpoint_of(self.p["webhook_url"] or "")}

    def fail(self, msg, **extra):
        self.result.update(extra)
        self.module.fail_json(msg=msg, **self.result)

    def validate(self):
        url = (self.p["webhook_url"] or "").strip()
        problem = check_url(url)
        if problem:
            self.fail("webhook_url (not shown) %s; give the incoming webhook URL of the chat app, for example "
                      "https://hooks.slack.com/services/T000/B000/XXXX, or set %s" % (problem, URL_ENV))
        for name, low in (("timeout", 1), ("retries", 0)):
            if self.p[name] < low:
                self.fail("%s=%s is too small: give at least %s" % (name, self.p[name], low))
        if not (self.p["text"] or self.p["markdown"] or self.p["blocks"]):
            self.fail("nothing to post: give text, markdown or blocks")
        return url

    def message(self):
        text = self.p["text"] or ""
        markdown = self.p["markdown"] or ""
        if not text and markdown:
            text = markdown.strip().splitlines()[0].replace("*", "") if markdown.strip() else ""
        blocks = self.p["blocks"] or ([markdown_section(markdown)] if markdown.strip() else None)
        return text, build_payload(text, blocks)

    def run(self):
        url = self.validate()
        text, payload = self.message()
        self.result.update(text=text, changed=True)
        if self.module._diff:
            shown = self.p["markdown"] or text
            self.result["diff"] = {"before": "", "after": shown + ("" if shown.endswith("\n") else "\n"),
                                   "after_header": "message to %s" % self.result["endpoint"]}
        if self.module.check_mode:
            self.result["msg"] = "check mode: would post the message to %s" % self.result["endpoint"]
            self.module.exit_json(**self.result)
        client = WebhookClient(url, timeout=self.p["timeout"], retries=self.p["retries"],
                               validate_certs=self.p["validate_certs"])
        started = time.monotonic()
        try:
            status, response = client.post(payload)
        except ChatError as exc:
            self.result.update(changed=False, attempts=exc.attempts or client.attempts, status=exc.status,
                               response=exc.response, duration_s=round(time.monotonic() - started, 3))
            self.fail(exc.msg)
        self.result.update(posted=True, status=status, response=response, attempts=client.attempts,
                           duration_s=round(time.monotonic() - started, 3),
                           msg="posted the message to %s" % self.result["endpoint"])
        self.module.exit_json(**self.result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            webhook_url=dict(type="str", required=True, no_log=True, fallback=(env_fallback, [URL_ENV])),
            text=dict(type="str"),
            markdown=dict(type="str"),
            blocks=dict(type="list", elements="dict"),
            timeout=dict(type="int", default=10),
            retries=dict(type="int", default=2),
            validate_certs=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("markdown", "blocks")],
        supports_check_mode=True,
    )
    ChatNotifier(module).run()


if __name__ == "__main__":
    main()
