# -*- coding: utf-8 -*-
# Copyright: (c) 2026, runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run this collection's modules inside the Ansible worker when the target is the controller itself.

Every task forks a worker process on the controller. For a remote host, that worker builds the module's AnsiballZ
payload, copies it over the connection and starts a Python interpreter there. For the ``local`` connection the
"remote" host is the controller, so that round trip only costs time: a temporary directory, a file transfer, a
``chmod``, a fresh interpreter that imports ``ansible.module_utils.basic`` again, and a clean-up. On a small
machine this is about 0.3 s per task, most of a runbook's wall time.

When the task runs on the ``local`` connection, without become, with the same Python interpreter as
``ansible-playbook``, the action plugin imports the module in the worker and runs its ``main()`` there. The worker
is a throw-away fork, so nothing a module does to process state outlives the task. The arguments and the result go
through the same JSON encoder and decoder (the module serialization profile) as a normal run, so the module sees
exactly the parameters it would see in its own process, and the controller sees exactly the result it would parse.

An ``async`` task runs the same way in a detached child of the worker, which writes the job file that
``ansible.builtin.async_status`` reads (the format ``async_wrapper`` writes), and at the async limit kills the job's
process group (the module and any command it started), as ``async_wrapper`` does.

Any other task (SSH, become, another interpreter, a module outside this collection) runs the normal way.
``runbook_release_in_worker: false`` (a host, group or play variable) turns this off; ``-vvv`` says which way each
task ran and why.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import traceback

from ansible.module_utils import _internal as _mu_internal
from ansible.module_utils import basic as _basic
from ansible.module_utils.common import warnings as _module_warnings
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.json_utils import _filter_non_json_lines
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action.normal import ActionModule as NormalActionModule
from ansible.utils.display import Display
from ansible.vars.clean import remove_internal_keys
from ansible_collections.runbook.release.plugins.module_utils._atomic import write_json_atomic

try:  # ansible-core 2.19 passes module arguments and results through serialization profiles
    from ansible.module_utils.common.json import Direction, get_module_encoder
except ImportError:  # older ansible-core: every task runs the normal way
    Direction = get_module_encoder = None

display = Display()

COLLECTION_PREFIX = "runbook.release."
MODULE_PACKAGE = "ansible_collections.runbook.release.plugins.modules."
SWITCH_VAR = "runbook_release_in_worker"
LOCAL_TRANSPORTS = frozenset(("local", "ansible.builtin.local", "ansible.legacy.local"))
# The modules of this collection declare no serialization metadata, so ansible-core uses this profile for them.
SERIALIZATION_PROFILE = "legacy"


@contextlib.contextmanager
def _module_side():
    """Make ``ansible.module_utils`` behave as in a module process for the call, and put the process back after.

    On the controller, ``module_utils`` displays a module's warnings and deprecations at once; in a module process
    they are returned with the result, and the task result must be the same either way. Restores the umask and
    the SIGTERM handler a module may set for itself (``pg_backup`` sets both).
    """
    was_controller = _mu_internal.is_controller
    umask = os.umask(0o077)
    os.umask(umask)
    sigterm = signal.getsignal(signal.SIGTERM)
    _module_warnings._global_warnings.clear()  # pylint: disable=protected-access
    _module_warnings._global_deprecations.clear()  # pylint: disable=protected-access
    _mu_internal.is_controller = False
    try:
        yield
    finally:
        _mu_internal.is_controller = was_controller
        _module_warnings._global_warnings.clear()  # pylint: disable=protected-access
        _module_warnings._global_deprecations.clear()  # pylint: disable=protected-access
        os.umask(umask)
        signal.signal(signal.SIGTERM, sigterm)


@contextlib.contextmanager
def _environment(update):
    """Apply the task's ``environment:`` to ``os.environ`` for the call and restore it after (loops share a worker)."""
    saved = {key: os.environ.get(key) for key in update}
    try:
        for key, value in update.items():
            os.environ[key] = to_text(value)
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def same_python(interpreter, executable):
    """Whether ``interpreter`` is the Python that runs ``executable``'s code, with the same packages.

    ``.venv/bin/python`` and ``.venv/bin/python3`` are the same interpreter in the same environment; the base Python a
    virtualenv links to is not (it lacks the virtualenv's packages), so links are followed only within one directory.
    """
    first, second = os.path.abspath(interpreter), os.path.abspath(executable)
    if first == second:
        return True
    return os.path.dirname(first) == os.path.dirname(second) and os.path.realpath(first) == os.path.realpath(second)


def preload(name):
    """Import module ``name``'s code in the process that loads its action plugin.

    ansible-playbook's strategy loads a task's action plugin class in the main process before it forks the worker,
    so the worker starts with the module imported (``smoke_check`` takes about 40 ms to import, ``statuspage_update``
    about 120 ms). A module that cannot be imported here is imported again in the worker, which reports the error.
    """
    try:
        importlib.import_module(MODULE_PACKAGE + name)
    except Exception:  # pylint: disable=broad-except
        pass


class InWorkerActionModule(NormalActionModule):
    """``ansible.builtin.normal`` that runs the module in the worker when the target is the controller."""

    def _in_worker_refusal(self, module_name, task_vars):
        """Why this module run must go the normal way, or ``None`` when it can run in the worker."""
        if get_module_encoder is None:
            return "this ansible-core has no module serialization profiles"
        if not boolean(self._templar.template(task_vars.get(SWITCH_VAR, True)), strict=False):
            return "%s is false" % SWITCH_VAR
        transport = getattr(self._connection, "_load_name", None) or self._connection.transport
        if transport not in LOCAL_TRANSPORTS:
            return "the connection is %s, not local" % transport
        if self._play_context.become:
            return "the task uses become"
        interpreter = task_vars.get("ansible_python_interpreter")
        if interpreter is None:
            return "ansible_python_interpreter is not set"
        interpreter = to_text(self._templar.template(interpreter))
        if not same_python(os.path.expanduser(interpreter), sys.executable):
            return "ansible_python_interpreter %s is not this controller's Python %s" % (interpreter, sys.executable)
        if not module_name.startswith(COLLECTION_PREFIX):
            return "%s is not a module of this collection" % module_name
        return None

    def _execute_module(self, module_name=None, module_args=None, tmp=None, task_vars=None, persist_files=False,
                        delete_remote_tmp=None, wrap_async=False, ignore_unknown_opts=False):
        task_vars = task_vars if task_vars is not None else {}
        resolved = self._resolve_module_name(module_name or self._task.action)
        refusal = self._in_worker_refusal(resolved, task_vars)
        if refusal:
            display.vvv("%s: runs the normal way (%s)" % (resolved, refusal), host=self._play_context.remote_addr)
            return super()._execute_module(
                module_name=module_name, module_args=module_args, tmp=tmp, task_vars=task_vars,
                persist_files=persist_files, delete_remote_tmp=delete_remote_tmp, wrap_async=wrap_async,
                ignore_unknown_opts=ignore_unknown_opts)
        module_args = module_args if module_args is not None else self._task.args
        self._update_module_args(resolved, module_args, task_vars, ignore_unknown_opts=ignore_unknown_opts)
        environment = {}
        self._compute_environment_string(raw_environment_out=environment)
        if wrap_async:
            display.vvv("%s: runs in a background child of the worker process (local connection, async %s s)" % (
                resolved, self._task.async_val), host=self._play_context.remote_addr)
            return self._start_in_background(resolved, module_args, environment)
        display.vvv("%s: runs in the worker process (local connection)" % resolved, host=self._play_context.remote_addr)
        rc, stdout, stderr, failure = _invoke(resolved, module_args, environment)
        if failure:
            return failure
        data = self._parse_returned_data({"rc": rc, "stdout": stdout, "stderr": stderr}, SERIALIZATION_PROFILE)
        return _clean_result(data)

    def _resolve_module_name(self, name):
        context = self._shared_loader_obj.module_loader.find_plugin_with_context(
            name, collection_list=self._task.collections)
        return context.resolved_fqcn if context.resolved else name

    def _start_in_background(self, fqcn, module_args, environment):
        """``async`` with the module in a detached grandchild of the worker; returns what async_wrapper returns."""
        async_dir = os.path.expanduser(to_text(self.get_shell_option("async_dir", default="~/.ansible_async")))
        os.makedirs(async_dir, mode=0o700, exist_ok=True)
        jid = "j%d.%d" % (secrets.randbelow(999999999999), os.getpid())
        job_path = os.path.join(async_dir, jid)
        write_json_atomic(job_path, {"started": True, "finished": False, "ansible_job_id": jid})
        limit = int(self._task.async_val)
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the forked child, which leaves with os._exit
            try:
                os.setsid()
                if os.fork():
                    os._exit(0)  # pylint: disable=protected-access
                _run_job(fqcn, module_args, environment, job_path, limit)
            finally:
                os._exit(0)  # pylint: disable=protected-access
        os.waitpid(child, 0)
        return {"started": True, "finished": False, "ansible_job_id": jid, "results_file": job_path,
                "changed": True}  # ActionBase reports changed for every async start, so this does too


def _invoke(fqcn, module_args, environment):
    """Import the module, feed it its encoded arguments and run ``main()``.

    Returns ``(rc, stdout, stderr, failure)``: what a module process would have exited with and printed, or, when
    the module raised instead of exiting, ``failure``, the task result that says so.
    """
    tmpdir = tempfile.mkdtemp(prefix="ansible-runbook-release-")
    module_args["_ansible_tmpdir"] = tmpdir
    encoder = get_module_encoder(SERIALIZATION_PROFILE, Direction.CONTROLLER_TO_MODULE)
    encoded = json.dumps({"ANSIBLE_MODULE_ARGS": module_args}, cls=encoder).encode()
    stdout, stderr = io.StringIO(), io.StringIO()
    rc = 0
    try:
        module = importlib.import_module(MODULE_PACKAGE + fqcn[len(COLLECTION_PREFIX):])
        _basic._ANSIBLE_ARGS = encoded  # pylint: disable=protected-access
        _basic._ANSIBLE_PROFILE = SERIALIZATION_PROFILE  # pylint: disable=protected-access
        with _module_side(), _environment(environment), \
                contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                module.main()
            except SystemExit as exit_:
                rc = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except Exception as exc:  # pylint: disable=broad-except
        # What a module process would print to stderr as its traceback before dying with rc 1.
        return 1, stdout.getvalue(), stderr.getvalue(), {
            "failed": True, "rc": 1,
            "msg": "%s raised %s: %s (run in the worker process; set %s=false to run it the normal way)" % (
                fqcn, type(exc).__name__, exc, SWITCH_VAR),
            "exception": traceback.format_exc(),
            "module_stdout": stdout.getvalue(), "module_stderr": stderr.getvalue(),
        }
    finally:
        _basic._ANSIBLE_ARGS = None  # pylint: disable=protected-access
        _basic._ANSIBLE_PROFILE = None  # pylint: disable=protected-access
        shutil.rmtree(tmpdir, ignore_errors=True)
    return rc, stdout.getvalue(), stderr.getvalue(), None


def _run_job(fqcn, module_args, environment, job_path, limit):
    """The detached job: run the module, write its result (or the timeout) where async_status looks."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for stream in (0, 1, 2):
        os.dup2(devnull, stream)

    def timed_out(_signum, _frame):
        write_json_atomic(job_path, {"failed": True, "msg": "Timeout exceeded", "child_pid": os.getpid()})
        os.killpg(os.getpgid(0), signal.SIGKILL)  # the module and what it started, like async_wrapper

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(max(limit, 1))
    rc, stdout, stderr, failure = _invoke(fqcn, module_args, environment)
    signal.alarm(0)
    if failure:
        result = failure
    else:
        try:
            result = json.loads(_filter_non_json_lines(stdout)[0])
        except ValueError as exc:
            result = {"failed": True, "rc": rc, "msg": "the module printed no result: %s" % exc,
                      "module_stdout": stdout, "module_stderr": stderr}
        if stderr:
            result["stderr"] = stderr
    write_json_atomic(job_path, result)


def _clean_result(data):
    """What ``ActionBase._execute_module`` does to a parsed module result before it returns it."""
    data.pop("_ansible_suppress_tmpdir_delete", None)
    remove_internal_keys(data)
    for stream in ("stdout", "stderr"):
        if stream in data and "%s_lines" % stream not in data:
            data["%s_lines" % stream] = (data.get(stream) or "").splitlines()
    return data
