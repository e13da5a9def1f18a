"""Running this collection's modules in the Ansible worker on a local connection (plugin_utils/_in_worker.py).

The playbook tests run real ``ansible-playbook`` processes on this machine (``deploy_lock`` on a temp project needs no
service) and compare, item by item, what a task returns when its module runs in the worker and when it runs the
normal way, as its own process.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.plugin_utils import _in_worker

REPO = Path(__file__).resolve().parents[4]
VOLATILE = {"heartbeat", "heartbeat_at", "started", "started_at", "acquired_at", "released_at", "pid", "duration_s",
            "age_s", "invocation", "ansible_job_id", "results_file", "child_pid", "attempts"}


def test_every_module_has_the_in_worker_action_plugin():
    modules = {p.stem for p in (REPO / "plugins" / "modules").glob("*.py") if p.stem != "__init__"}
    actions = {p.stem for p in (REPO / "plugins" / "action").glob("*.py") if p.stem != "__init__"}
    assert modules == actions
    for name in actions:
        text = (REPO / "plugins" / "action" / (name + ".py")).read_text()
        assert "import InWorkerActionModule as ActionModule" in text, name
        assert 'preload("%s")' % name in text, name


def test_loading_an_action_plugin_imports_its_module_for_the_workers_to_inherit(monkeypatch):
    action = "ansible_collections.runbook.release.plugins.action.release_gate"
    module = _in_worker.MODULE_PACKAGE + "release_gate"
    monkeypatch.delitem(sys.modules, action, raising=False)
    monkeypatch.delitem(sys.modules, module, raising=False)
    importlib.import_module(action)
    assert module in sys.modules


def test_the_same_python_is_recognised_under_another_name_in_its_own_directory_only(tmp_path):
    venv_bin, other_bin = tmp_path / "venv" / "bin", tmp_path / "other"
    venv_bin.mkdir(parents=True)
    other_bin.mkdir()
    base = tmp_path / "python3.11"
    base.write_text("")
    (venv_bin / "python3").symlink_to(base)
    (venv_bin / "python").symlink_to("python3")
    (other_bin / "python3").symlink_to(base)
    assert _in_worker.same_python(str(venv_bin / "python"), str(venv_bin / "python3"))
    assert _in_worker.same_python(str(venv_bin / "python3"), str(venv_bin / "python3"))
    assert not _in_worker.same_python(str(other_bin / "python3"), str(venv_bin / "python3"))
    assert not _in_worker.same_python(str(base), str(venv_bin / "python3"))


def test_preload_leaves_an_import_error_to_the_worker():
    _in_worker.preload("no_such_module")  # no exception: the task's worker reports it


PLAYBOOK = textwrap.dedent("""\
    - hosts: localhost
      connection: local
      gather_facts: false
      vars:
        lock_args: &lock
          project_src: "{{ project }}"
          run_id: run-1
          version: v1.2.3
          ttl: 60
      tasks:
        - name: Take the lock in check mode
          runbook.release.deploy_lock: *lock
          check_mode: true
          diff: true
          register: r_check
        - name: Take the lock
          runbook.release.deploy_lock: *lock
          register: r_take
          environment:
            USER: owner-from-task-environment
        - name: Take it again (re-entrant, unchanged)
          runbook.release.deploy_lock: *lock
          register: r_again
        - name: Another run is refused and named
          runbook.release.deploy_lock:
            project_src: "{{ project }}"
            run_id: run-2
            version: v1.2.4
            timeout: 0
          register: r_other
          ignore_errors: true
        - name: Bad input is refused
          runbook.release.deploy_lock:
            project_src: "{{ project }}"
            ttl: -5
          register: r_bad
          ignore_errors: true
        # Its lock is one nobody releases: ansible-core's async_wrapper sets the job's process group only after
        # forking it, so on a busy machine the module can escape the kill and wait on; it must find nothing to take.
        - name: Another project's lock is held for good
          runbook.release.deploy_lock:
            project_src: "{{ project }}-held"
            run_id: run-9
            version: v1.2.9
        - name: A run that waits for the lock longer than its async limit is timed out
          runbook.release.deploy_lock:
            project_src: "{{ project }}-held"
            run_id: run-2
            version: v1.2.4
            timeout: 30
          async: 2
          poll: 0
          register: r_slow_job
        - name: Wait for the timed-out job
          ansible.builtin.async_status:
            jid: "{{ r_slow_job.ansible_job_id }}"
          register: r_slow
          until: r_slow.finished
          retries: 20
          delay: 1
          ignore_errors: true
        - name: Release it, in a loop of two (the second is unchanged)
          runbook.release.deploy_lock:
            project_src: "{{ project }}"
            run_id: run-1
            state: released
          loop: [1, 2]
          register: r_release
        - name: Take another project's lock in the background
          runbook.release.deploy_lock:
            project_src: "{{ project }}2"
            run_id: run-3
            version: v1.2.5
          async: 30
          poll: 0
          register: r_bg_job
        - name: Wait for it
          ansible.builtin.async_status:
            jid: "{{ r_bg_job.ansible_job_id }}"
          register: r_bg
          until: r_bg.finished
          retries: 20
          delay: 1
        - name: Release it in the background, with Ansible polling
          runbook.release.deploy_lock:
            project_src: "{{ project }}2"
            run_id: run-3
            state: released
          async: 30
          poll: 1
          register: r_bg_poll
        - name: Write what the tasks returned
          ansible.builtin.copy:
            dest: "{{ out }}"
            content: "{{ {'check': r_check, 'take': r_take, 'again': r_again, 'other': r_other, 'bad': r_bad,
                          'release': r_release.results, 'slow_job': r_slow_job, 'slow': r_slow,
                          'bg_job': r_bg_job, 'bg': r_bg, 'bg_poll': r_bg_poll} | to_json }}"
            mode: "0600"
    """)


def _run_playbook(tmp_path, label, in_worker, extra=()):
    work = tmp_path / label
    (work / "project").mkdir(parents=True)
    (work / "project2").mkdir()
    (work / "project-held").mkdir()
    (work / "play.yml").write_text(PLAYBOOK)
    out = work / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"), ANSIBLE_CALLBACKS_ENABLED="ansible.builtin.junit",
               JUNIT_OUTPUT_DIR=str(work / "junit"),
               RUNBOOK_RELEASE_RECORD_DIR=str(work / "records"))
    cmd = [str(Path(sys.executable).parent / "ansible-playbook"), "-vvv", "-i", "localhost,", str(work / "play.yml"),
           "-e", "project=%s out=%s" % (work / "project", out),
           "-e", "ansible_python_interpreter=%s" % sys.executable,
           "-e", json.dumps({"runbook_release_in_worker": in_worker}), *extra]
    proc = subprocess.run(cmd, env=env, cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads(out.read_text()), proc.stdout


def _stable(value):
    """The result without times, pids and paths that differ between two runs by nature."""
    if isinstance(value, dict):
        return {k: _stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_stable(v) for v in value]
    if isinstance(value, str):
        return value.split("/in-worker/")[-1].split("/normal/")[-1]
    return value


def _without_run_detail(value):
    """Times, pids and heartbeat ages differ between two runs by nature, also inside messages and diffs."""
    text = json.dumps(value, sort_keys=True)
    for pattern, repl in ((r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "<time>"), (r"\d{10}\.\d+", "<epoch>"),
                          (r"pid \d+", "pid <pid>"), (r'pid\\": \d+', "pid<pid>"), (r"heartbeat [^,)]*", "<heartbeat>"),
                          (r"in about \d+ s", "in about <n> s")):  # the ttl left: a second apart on a busy machine
        text = re.sub(pattern, repl, text)
    return json.loads(text)


@pytest.fixture(scope="module")
def both_ways(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("in_worker")
    return _run_playbook(tmp_path, "in-worker", True), _run_playbook(tmp_path, "normal", False)


def test_results_are_the_same_in_the_worker_and_as_a_process(both_ways):
    in_worker, normal = both_ways[0][0], both_ways[1][0]
    assert _without_run_detail(_stable(in_worker)) == _without_run_detail(_stable(normal))


def test_results_are_the_real_module_results(both_ways):
    result = both_ways[0][0]
    assert result["check"]["changed"] and not result["check"]["failed"]
    assert "diff" in result["check"]
    assert result["take"]["changed"] and result["take"]["lock"]["run_id"] == "run-1"
    assert not result["again"]["changed"]
    assert result["other"]["failed"] and "run-1" in result["other"]["msg"]
    assert result["bad"]["failed"] and "ttl" in result["bad"]["msg"]
    assert [r["changed"] for r in result["release"]] == [True, False]
    assert [r["action"] for r in result["release"]] == ["released", "none"]


def test_async_tasks_run_in_the_background_and_report_through_async_status(both_ways):
    for result in (both_ways[0][0], both_ways[1][0]):
        assert result["bg_job"]["started"] and not result["bg_job"]["finished"] and result["bg_job"]["changed"]
        assert result["bg"]["finished"] and result["bg"]["changed"] and result["bg"]["lock"]["run_id"] == "run-3"
        assert result["bg_poll"]["finished"] and result["bg_poll"]["changed"]
        assert result["slow_job"]["started"]
        assert result["slow"]["failed"] and result["slow"]["msg"] == "Timeout exceeded"


def test_the_task_environment_reaches_the_module_in_the_worker(both_ways):
    in_worker, normal = both_ways[0][0], both_ways[1][0]
    assert in_worker["take"]["lock"]["owner"] == "owner-from-task-environment"
    assert normal["take"]["lock"]["owner"] == "owner-from-task-environment"


def test_verbose_output_says_which_way_each_task_ran(both_ways):
    in_worker_out, normal_out = both_ways[0][1], both_ways[1][1]
    assert "runbook.release.deploy_lock: runs in the worker process" in in_worker_out
    assert "runbook.release.deploy_lock: runs in a background child of the worker process" in in_worker_out
    assert "runs the normal way" not in in_worker_out
    assert "AnsiballZ_deploy_lock" not in in_worker_out
    assert "runs the normal way (runbook_release_in_worker is false)" in normal_out
    assert "AnsiballZ_deploy_lock" in normal_out


class _Fake:
    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class _Templar:
    @staticmethod
    def template(value):
        return value


def _action(transport="local", become=False):
    action = object.__new__(_in_worker.InWorkerActionModule)
    action._connection = _Fake(_load_name=transport, transport=transport)
    action._play_context = _Fake(become=become, remote_addr="localhost")
    action._templar = _Templar()
    return action


@pytest.mark.parametrize("kwargs, task_vars, module, reason", [
    ({}, {"runbook_release_in_worker": False}, None, "runbook_release_in_worker is false"),
    ({"transport": "ssh"}, {}, None, "the connection is ssh, not local"),
    ({"transport": "ansible.builtin.paramiko_ssh"}, {}, None, "not local"),
    ({"become": True}, {}, None, "the task uses become"),
    ({}, {"ansible_python_interpreter": None}, None, "ansible_python_interpreter is not set"),
    ({}, {"ansible_python_interpreter": "/usr/bin/python3"}, None, "is not this controller's Python"),
    ({}, {}, "community.general.thing", "is not a module of this collection"),
    ({}, {}, None, None),
])
def test_which_tasks_run_in_the_worker(kwargs, task_vars, module, reason):
    variables = {"ansible_python_interpreter": sys.executable}
    variables.update(task_vars)
    if variables["ansible_python_interpreter"] is None:
        del variables["ansible_python_interpreter"]
    refusal = _action(**kwargs)._in_worker_refusal(module or "runbook.release.deploy_lock", variables)
    if reason is None:
        assert refusal is None
    else:
        assert reason in refusal


def _run(fqcn, args, environment=None):
    """The real run-and-parse path of a task in the worker, without the task around it."""
    rc, stdout, stderr, failure = _in_worker._invoke(fqcn, args, environment or {})  # pylint: disable=protected-access
    if failure:
        return failure
    action = object.__new__(_in_worker.InWorkerActionModule)
    action._used_interpreter = None  # pylint: disable=protected-access
    parsed = action._parse_returned_data(  # pylint: disable=protected-access
        {"rc": rc, "stdout": stdout, "stderr": stderr}, _in_worker.SERIALIZATION_PROFILE)
    return _in_worker._clean_result(parsed)  # pylint: disable=protected-access


@pytest.fixture
def fake_modules(tmp_path, monkeypatch):
    """Modules importable as runbook.release.<name> that behave in ways ours must survive."""
    package = tmp_path / "rb_in_worker_fakes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "raises.py").write_text("def main():\n    raise RuntimeError('boom in main')\n")
    (package / "exits.py").write_text(textwrap.dedent("""\
        import os, signal
        from ansible.module_utils.basic import AnsibleModule

        def main():
            module = AnsibleModule(argument_spec=dict(token=dict(type='str', no_log=True), name=dict(type='str')),
                                   supports_check_mode=True)
            os.umask(0o077)
            signal.signal(signal.SIGTERM, lambda *a: None)
            module.warn('a warning from the module')
            module.exit_json(changed=not module.check_mode, echoed=module.params['token'], name=module.params['name'],
                             seen_env=os.environ.get('RB_IN_WORKER_TEST'), tmpdir_exists=os.path.isdir(module.tmpdir))
        """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(_in_worker, "MODULE_PACKAGE", "rb_in_worker_fakes.")
    return package


def test_a_module_exception_becomes_a_failed_result_naming_the_switch(fake_modules):
    result = _run("runbook.release.raises", {})
    assert result["failed"] and result["rc"] == 1
    assert "runbook.release.raises raised RuntimeError: boom in main" in result["msg"]
    assert "runbook_release_in_worker=false" in result["msg"]
    assert "boom in main" in result["exception"]


def test_a_module_result_is_parsed_with_no_log_values_masked_and_the_process_put_back(fake_modules, monkeypatch):
    monkeypatch.delenv("RB_IN_WORKER_TEST", raising=False)
    umask = os.umask(0o022)
    os.umask(umask)
    sigterm = signal.getsignal(signal.SIGTERM)
    result = _run("runbook.release.exits", {"token": "s3cr3t-in-worker-token", "name": "x",
                                            "_ansible_check_mode": True}, {"RB_IN_WORKER_TEST": "from-task"})
    assert result["changed"] is False
    assert result["name"] == "x"
    assert result["seen_env"] == "from-task"
    assert result["tmpdir_exists"] is True
    assert "s3cr3t-in-worker-token" not in json.dumps(result, default=repr)
    assert [w.event.msg for w in result["warnings"]] == ["a warning from the module"]  # returned, as from a process
    assert "RB_IN_WORKER_TEST" not in os.environ
    current = os.umask(umask)
    assert current == umask
    assert signal.getsignal(signal.SIGTERM) == sigterm
    assert _in_worker._basic._ANSIBLE_ARGS is None  # pylint: disable=protected-access


SLEEPER = textwrap.dedent("""\
    import os, subprocess, time

    def main():
        child = subprocess.Popen(['sleep', '60'])
        with open(os.environ['RB_SLEEP_PID_FILE'], 'w') as handle:
            handle.write(str(child.pid))
        time.sleep(60)
    """)

JOB = textwrap.dedent("""\
    import sys
    from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder
    _AnsibleCollectionFinder(paths=[sys.argv[1]])._install()
    sys.path.insert(0, sys.argv[2])
    from ansible_collections.runbook.release.plugins.plugin_utils import _in_worker
    _in_worker.MODULE_PACKAGE = "rb_in_worker_fakes."
    _in_worker._run_job("runbook.release.sleeper", {}, {"RB_SLEEP_PID_FILE": sys.argv[3]}, sys.argv[4], 1)
    """)


def _alive(pid):
    try:
        with open("/proc/%d/stat" % pid, encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_async_job_past_its_limit_is_killed_with_what_it_started(fake_modules, tmp_path):
    (fake_modules / "sleeper.py").write_text(SLEEPER)
    pid_file, job_path = tmp_path / "sleep.pid", tmp_path / "job"
    proc = subprocess.run([sys.executable, "-c", JOB, str(REPO / "collections"), str(fake_modules.parent),
                           str(pid_file), str(job_path)], start_new_session=True, timeout=60, check=False)
    assert proc.returncode == -signal.SIGKILL
    job = json.loads(job_path.read_text())
    assert job["failed"] is True and job["msg"] == "Timeout exceeded"
    sleep_pid = int(pid_file.read_text())
    for _attempt in range(50):
        if not _alive(sleep_pid):
            break
        time.sleep(0.1)
    assert not _alive(sleep_pid), "the command the module started outlived the timed-out job"
