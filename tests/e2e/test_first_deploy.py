"""End to end: the first-time deploy runbook (playbooks/first_deploy.yml, seed 004 §5) on the sandbox.

`scripts/sandbox up --empty` leaves every service running but no stack deployed and an empty appdb; the runbook must
bring v1.2.2 (the version the sandbox serves) up from nothing: extensions, every migration (history table), seed data once, compose up, smoke checks,
announcements, a record and the handoff. The tests judge from outside: the proxy, psql, `docker ps`, the
Statuspage/chat stand-ins and the deployment records. The module empties the sandbox before it and resets it
(v1.2.2 serving) after it.

Order matters and is the file's order: refusals and check mode first (nothing changes), then the first deploy and its
rerun (refused: something is deployed now), then failing first deploys, each on a newly emptied sandbox: v1.2.4-unhealthy
(its migrations rename items.name, so the seed takes its other branch) fails its health gate, and a seed that fails
stops the run before compose up; both must end on the maintenance page with no application container running.
"""

# pytest fixtures are parameters named like the module-level fixture functions.
# pylint: disable=redefined-outer-name

import json
import subprocess

import pytest
import requests

from runbook_e2e import (BASE, CHAT, FLAG, PROJECT, RECORDS, STATUSPAGE, ProcessArgs, chat_bodies, check_secrets_absent,
                         flat, last_seq, psql, recap, record_file_of, record_of, requests_of, run, served_version)
from sandbox_cli import sandbox

GOOD, BAD = "v1.2.2", "v1.2.4-unhealthy"
SEED_NAME = "Welcome to rbdemo"  # inventories/local/group_vars/all/first_deploy.yml
MIGRATIONS = ["V001", "V002", "V003"]  # what v1.2.2 ships
APP_SERVICES = {"api", "web", "worker"}


@pytest.fixture(scope="module", autouse=True)
def empty_sandbox():
    """Services up, nothing deployed, an empty appdb; the baseline (v1.2.2) again after the module."""
    sandbox("up", "--empty")
    yield
    sandbox("up", "--reset")


@pytest.fixture(scope="module")
def outputs():
    """Every runbook output and run id of the module, for the secrets check at the end."""
    return {"texts": [], "run_ids": []}


# --- helpers (besides runbook_e2e's) -----------------------------------------------------------------------------

def first_deploy(outputs, *extra):
    with ProcessArgs() as seen:  # every command line on the host meanwhile: checked for secrets at the end
        proc, run_id, _seconds = run("first_deploy.yml", *extra)
    outputs["texts"].append(proc.stdout + proc.stderr)
    outputs["texts"].append("\n".join(seen.args))
    outputs["run_ids"].append(run_id)
    return proc, run_id


def running_services():
    """Services of the demo stack with a running container."""
    proc = subprocess.run(["docker", "ps", "--filter", f"label=com.docker.compose.project={PROJECT}", "--filter",
                           "status=running", "--format", '{{.Label "com.docker.compose.service"}}'],
                          capture_output=True, text=True, check=True)
    return set(proc.stdout.split())


def user_tables():
    return int(psql("SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"))


def extensions():
    return set(psql("SELECT extname FROM pg_extension").split())


def changes_sent(url, since):
    """Requests a stand-in received after `since` that change something (not reads)."""
    return [r for r in requests_of(url, since=since) if r["method"] not in ("GET", "HEAD")]


def chat_messages(since):
    """Every chat message posted after `since`, its whole body as JSON (`text` is only the headline)."""
    return [json.dumps(body, ensure_ascii=False) for body in chat_bodies(since)]


def seed_rows():
    """Rows of the inventory's seed, whichever schema (items.name before V006, items.title after)."""
    return psql("SELECT count(*) FROM items i "
                f"WHERE coalesce(to_jsonb(i) ->> 'title', to_jsonb(i) ->> 'name') = '{SEED_NAME}'")


def version_status():
    return requests.get(f"{BASE}/api/version", timeout=5).status_code


# --- refusals and check mode: nothing changes ------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    ((), "version is required: pass -e version=v1.2.3"),
    (("-e", '{"version": "v1.2.3;rm"}'), 'version "v1.2.3;rm" is not valid'),
    (("-e", f"version={GOOD}", "-e", "release_environment=moon"), 'environment "moon" is unknown'),
    (("-e", f"version={GOOD}", "-e", '{"first_deploy_extensions": ["uuid-ossp; DROP"]}'),
     'extension "uuid-ossp; DROP" in first_deploy_extensions is not an extension name'),
])
def test_bad_input_is_refused_before_any_change(outputs, extra, message):
    chat, page = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, _run_id = first_deploy(outputs, *extra)
    text = flat(proc)
    assert proc.returncode != 0
    assert "Bad input" in text and message in text and "Nothing was changed" in text, text[-2000:]
    assert recap(proc.stdout)["changed"] == 0
    assert running_services() == set() and user_tables() == 0 and "pg_trgm" not in extensions()
    assert changes_sent(CHAT, chat) == [] and changes_sent(STATUSPAGE, page) == []


def test_check_mode_says_what_it_would_do_and_changes_nothing(outputs):
    chat, page = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, _run_id = first_deploy(outputs, "-e", f"version={GOOD}", "--check")
    text = flat(proc)
    assert proc.returncode == 0, text[-3000:]
    assert "Compose up would start api, start proxy, start web, start worker at v1.2.2" in text
    assert "3 migration(s) to run" in text and "would load welcome_item" in text
    assert running_services() == set() and user_tables() == 0 and "pg_trgm" not in extensions()
    assert not FLAG.exists()
    assert changes_sent(CHAT, chat) == [] and changes_sent(STATUSPAGE, page) == []


# --- the first deploy, and its rerun ----------------------------------------------------------------------------------

def test_first_deploy_brings_the_version_up_from_nothing(outputs):
    chat = last_seq(CHAT)
    proc, run_id = first_deploy(outputs, "-e", f"version={GOOD}")
    assert proc.returncode == 0, flat(proc)[-3000:]
    assert served_version() == GOOD
    assert running_services() == APP_SERVICES | {"proxy"}
    assert {"uuid-ossp", "pg_trgm", "btree_gin"} <= extensions()
    history = psql("SELECT version FROM runbook_release.schema_history WHERE kind = 'up' AND success ORDER BY 1")
    assert history.split() == MIGRATIONS
    assert seed_rows() == "1"
    assert psql("SELECT count(*) FROM items") == "501"  # V002's 500 and the seed

    record = record_of(run_id)
    assert record["runbook"] == "first_deploy" and record["outcome"] == "success"
    assert record["version"] == GOOD and record.get("previous_version") is None
    release = record["release"]  # the release data contract (docs/release-data-contract.md)
    assert release["runbook"] == "first_deploy" and release["outcome"] == "success"
    assert [m["version"] for m in release["migrations"]["applied"]] == MIGRATIONS
    assert release["migrations"]["schema_version"] == "V003"
    assert release["smoke"]["passed"] is True
    assert release["handoff"]["posted"] is True
    handoff = record_file_of(run_id).with_suffix(".handoff.md")
    assert handoff.exists() and GOOD in handoff.read_text()

    page = requests_of(STATUSPAGE, run_id=run_id)
    assert any(r["method"] == "POST" for r in page), page  # the release maintenance, opened then completed
    texts = chat_messages(chat)
    assert any("Release v1.2.2 Deployment Starting" in t for t in texts), texts
    assert any(GOOD in t and "Extensions:" in t for t in texts), texts  # completion and handoff list what was done


def test_rerun_is_refused_because_something_is_deployed_now(outputs):
    chat, page = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, _run_id = first_deploy(outputs, "-e", f"version={GOOD}")
    text = flat(proc)
    assert proc.returncode != 0
    assert "Refused: rbdemo is already deployed on local" in text, text[-2000:]
    assert "the release history records v1.2.2 as released" in text
    assert "playbooks/release.yml -e version=v1.2.2" in text and "Nothing was changed" in text
    assert recap(proc.stdout)["changed"] == 0
    assert served_version() == GOOD
    assert seed_rows() == "1"
    assert changes_sent(CHAT, chat) == [] and changes_sent(STATUSPAGE, page) == []


# --- a failing first deploy: shut down to the maintenance page ----------------------------------------------------------

def test_a_failing_first_deploy_shuts_down_to_the_maintenance_page(outputs):
    sandbox("up", "--empty")
    chat = last_seq(CHAT)
    proc, run_id = first_deploy(outputs, "-e", f"version={BAD}")
    text = flat(proc)
    assert proc.returncode != 0
    assert f"The first deploy of {BAD} to local FAILED in phase rollout" in text, text[-3000:]
    assert "Shut down: the maintenance page is on and served, the application containers are stopped" in text

    assert FLAG.exists()
    assert version_status() == 503  # the proxy serves the maintenance page
    assert running_services() == {"proxy"}

    record = record_of(run_id)
    release = record["release"]
    assert release["runbook"] == "first_deploy" and release["outcome"] == "rolled_back"
    assert release["rollback"]["trigger"] == "rollout" and release["rollback"]["rolled_back_to"] is None
    assert "maintenance page" in release["rollback"]["reason"]
    assert (RECORDS / f"{run_id}_sandbox.diagnostics.txt").exists()

    incident = [r for r in requests_of(STATUSPAGE, run_id=run_id) if f"{run_id}-incident" in str(r)]
    assert incident, "no status page incident for the failed first deploy"
    assert any("INCIDENT" in t and BAD in t for t in chat_messages(chat))


def test_a_failure_before_compose_up_leaves_the_maintenance_flag_and_nothing_started(outputs):
    """A seed that fails (after the migrations, before compose up): nothing of the stack ever started, so there is
    nothing to stop; the maintenance flag is on for when the proxy starts, the migrations stay (the summary says
    which), and the outcome is `failed` (nothing to roll back). A retry after fixing the seed is allowed."""
    sandbox("up", "--empty")
    chat = last_seq(CHAT)
    broken = json.dumps({"first_deploy_seeds": [
        {"name": "broken_seed", "unless": "SELECT false", "sql": "INSERT INTO no_such_table VALUES (1)"}]})
    proc, run_id = first_deploy(outputs, "-e", f"version={GOOD}", "-e", broken)
    text = flat(proc)
    assert proc.returncode != 0
    assert f"The first deploy of {GOOD} to local FAILED in phase seed" in text, text[-3000:]
    assert "broken_seed" in text and "no_such_table" in text  # psql's reason, named by the seed
    assert "Nothing of the stack had started; the maintenance page is on for when it does." in text
    assert "The database keeps what was applied (V003)" in text and "run first_deploy.yml again" in text
    assert FLAG.exists() and running_services() == set()
    assert psql("SELECT count(*) FROM items") == "500"  # V002's rows; the seed's transaction was rolled back
    assert record_of(run_id)["release"]["outcome"] == "failed"
    assert any("INCIDENT" in t and GOOD in t for t in chat_messages(chat))


def test_secrets_are_absent_from_outputs_and_records(outputs, secret_of):
    texts = list(outputs["texts"])
    for path in RECORDS.glob("*"):
        if not path.is_file() or path.suffix not in (".json", ".md", ".html", ".jsonl", ".txt"):
            continue
        text = path.read_text(errors="replace")
        if any(run_id in path.name or run_id in text for run_id in outputs["run_ids"]):
            texts.append(text)
    assert len(texts) > len(outputs["texts"])
    check_secrets_absent(texts, secret_of)
