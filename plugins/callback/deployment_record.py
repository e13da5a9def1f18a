# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
name: deployment_record
type: notification
short_description: Writes a deployment record and the on-call handoff for every run, without leaking secrets
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Records what a release manager writes down by hand at the end of a release. Per run, one JSON record with the
    run id (the C(run_id) of the release data when the playbook set one), the AWX job id, runbook, environment,
    service, version and previous version, operator, controller, ansible-core and collection versions, the
    project's git commit, check mode, limit and tags; start and end in UTC and durations from a monotonic clock;
    durations per phase (a C(phase_<name>) tag, else the role, else C(pre_tasks)/C(tasks)/C(post_tasks)/C(handlers));
    per host stats; per task its name, action, status, changed count and duration, never its result; the
    outcome (C(success), C(failed), C(rolled_back), C(aborted)) with the rollback trigger and reason; and what
    the modules reported under the C(runbook_release) custom stats key (the release data contract), validated
    with a warning, never a failure.
  - Writes as the run goes an append-only journal (one JSON line per event, so a crash leaves a partial record),
    and when it ends the final record atomically (temp file, fsync, rename), mode 0600. SIGINT and SIGTERM mark
    the record C(aborted) and then reach the handlers that were there before.
  - Renders the on-call handoff (Markdown and a self-contained HTML page with an SVG timeline of the phases) next
    to the record, and prints a short release summary. C(scripts/release-report) renders any stored record again;
    C(scripts/release-metrics) computes deployment frequency, lead time, change failure rate and time to restore.
  - Secrets are scrubbed in layers before anything is written or printed; C(no_log) results stay censored; values
    of keys such as password, token, secret, api_key, authorization, cookie, private_key and dsn, and passwords
    in C(scheme://user:pass@host) URLs, are replaced everywhere, extra vars included.
  - Every hook is guarded; an error inside one is shown once as a warning and the record goes on without it.
    The run never fails because of this callback.
  - The handoff reads these variables of the first host of each play (inventory or play vars)
    C(release_handoff_watch_for), C(release_handoff_known_issues), C(release_handoff_dashboards),
    C(release_escalation_contacts) (strings, or dicts with C(role), C(name), C(contact)), C(release_changes)
    (list), C(release_changelog_file) (a changelog whose section for the version lists the changes),
    C(release_changes_git_range) (a revision range such as C(v1.2.2..v1.2.3) whose commit subjects are the changes,
    read with C(git log) in C(release_changes_git_dir), default the playbook's project directory; used when neither
    of the other two gives changes) and C(release_rollback_command). See docs/deployment-record.md.
requirements:
  - psycopg2 on the controller, only when O(record_dsn) is set.
options:
  record_dir:
    description:
      - Directory of the records, journals and handoff reports (created 0700 when missing).
      - When unset, the AWX/ansible-runner artifacts directory of the job (E(AWX_ISOLATED_DATA_DIR), which
        ansible-runner points at C(<private_data_dir>/artifacts/<ident>)) when that is set, else C(records/)
        in the project directory (the directory of the ansible.cfg in use, else the current directory).
    type: path
    env:
      - name: RUNBOOK_RELEASE_RECORD_DIR
    ini:
      - section: runbook_release
        key: record_dir
  record_dsn:
    description:
      - PostgreSQL connection string (URL or key=value) of a release history database. Each record is upserted
        into O(record_table) (created when missing), keyed by the record id, with the whole record as jsonb.
      - Its password is never printed or written; a failed write is a warning.
    type: str
    env:
      - name: RUNBOOK_RELEASE_RECORD_DSN
    ini:
      - section: runbook_release
        key: record_dsn
  record_table:
    description: Table of the release history in O(record_dsn); a plain SQL identifier.
    type: str
    default: deployments
    env:
      - name: RUNBOOK_RELEASE_RECORD_TABLE
    ini:
      - section: runbook_release
        key: record_table
  report_formats:
    description: Handoff reports rendered when the run ends, next to the record; an empty list renders none.
    type: list
    elements: str
    default: [md, html]
    env:
      - name: RUNBOOK_RELEASE_REPORT_FORMATS
    ini:
      - section: runbook_release
        key: report_formats
  include_results:
    description:
      - Also keep the (scrubbed, truncated) message of the first failed task. Results are never kept otherwise,
        and C(no_log) results never.
    type: bool
    default: false
    env:
      - name: RUNBOOK_RELEASE_RECORD_INCLUDE_RESULTS
    ini:
      - section: runbook_release
        key: include_results
  summary:
    description: Print the release summary (phases with durations, outcome, from and to version) at the end.
    type: bool
    default: true
    env:
      - name: RUNBOOK_RELEASE_RECORD_SUMMARY
    ini:
      - section: runbook_release
        key: summary
"""

import atexit
import functools
import getpass
import json
import os
import signal
import socket
import threading
import time
import uuid

from ansible import constants as C
from ansible import context
from ansible.plugins.callback import CallbackBase
from ansible.release import __version__ as ansible_core_version

from ansible_collections.runbook.release.plugins.module_utils import _deployment_record as dr
from ansible_collections.runbook.release.plugins.module_utils import _report
from ansible_collections.runbook.release.plugins.module_utils._redact import Redactor, censor
from ansible_collections.runbook.release.plugins.module_utils._release_data import STATS_KEY

try:
    from ansible.template import Templar
except ImportError:  # pragma: no cover - ansible-core always has it
    Templar = None

COLLECTION_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SET_STATS = frozenset(("set_stats", "ansible.builtin.set_stats", "ansible.legacy.set_stats"))
PLAY_VARS = (("release_environment", "release_service", "release_changelog_file", "release_changes_git_range",
              "release_changes_git_dir") + tuple(dr.HANDOFF_VARS))
NAME = "runbook.release.deployment_record"


def _guarded(method):
    """Run a hook; on any error warn once for that hook and keep going (the run must never notice)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        locked = self._lock.acquire(timeout=5)
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # a record must never break or stop a release
            self._hook_failed(method.__name__, exc)
            return None
        finally:
            if locked:
                self._lock.release()
            self._busy_s += time.perf_counter() - started
    return wrapper


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = NAME
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None):
        super().__init__(display=display)
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._redactor = Redactor()
        self._builder = None
        self._journal = None
        self._dir = None
        self._stem = None
        self._warned = set()
        self._warnings = []
        self._sections = {}
        self._play = None
        self._play_vars_done = False
        self._vars = {}
        self._previous = {}
        self._finalized = False
        self._busy_s = 0.0
        self._quiet = False  # inside a signal handler or at exit: no display (its lock may be held)
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------------------------------ plumbing

    def _hook_failed(self, where, exc):
        message = self._redactor.text("%s: %s failed (%s: %s); the record goes on without it"
                                      % (NAME, where, type(exc).__name__, exc))
        self._warnings.append(message)
        if where not in self._warned and not self._quiet:
            self._warned.add(where)
            try:
                self._display.warning(message)
            except Exception:  # display itself broken: nothing more we can do
                pass

    def _event(self, event):
        if self._journal is not None and self._builder is not None:
            event["t"] = self._builder.now_s()
            try:
                self._journal.write(event)
            except OSError as exc:
                self._journal = None
                self._hook_failed("journal", exc)

    def _project_dir(self):
        config = getattr(C, "CONFIG_FILE", None)
        return os.path.dirname(os.path.abspath(config)) if config else os.getcwd()

    def _record_dir(self):
        configured = self.get_option("record_dir")
        if configured:
            return configured
        awx = os.environ.get("AWX_ISOLATED_DATA_DIR")
        if awx:
            return awx
        return os.path.join(self._project_dir(), "records")

    def _path(self, suffix):
        return os.path.join(self._dir, self._stem + suffix)

    def _start(self, playbook):
        record_id = uuid.uuid4().hex
        self._builder = dr.RecordBuilder(record_id)
        controller = socket.gethostname()
        project_dir = self._project_dir()
        try:
            project = dict(dr.git_info(project_dir), dir=project_dir)
        except Exception as exc:
            project = {"dir": project_dir}
            self._hook_failed("git_info", exc)
        cli = context.CLIARGS
        inventories = [os.path.relpath(i, project_dir) if os.path.isabs(i) and i.startswith(project_dir + os.sep)
                       else i for i in (cli.get("inventory") or [])]
        self._builder.meta.update({
            "controller": controller,
            "ansible_core": ansible_core_version,
            "collection": dr.collection_info(COLLECTION_ROOT),
            "project": project,
            "job_id": os.environ.get("JOB_ID") or None,
            "operator": os.environ.get("USER") or _login_name(),
            "check_mode": bool(cli.get("check")),
            "diff_mode": bool(cli.get("diff")),
            "limit": cli.get("subset") or None,
            "tags": list(cli.get("tags") or []),
            "skip_tags": list(cli.get("skip_tags") or []),
            "inventory": inventories,
            "playbooks": [],
        })
        self._install_signal_handlers()
        self._dir = dr.ensure_dir(self._record_dir())
        stamp = self._builder.started.strftime("%Y%m%dT%H%M%SZ")
        self._stem = "%s_%s_%s" % (stamp, dr.safe_name(controller, "controller"), record_id[:12])
        self._journal = dr.Journal(self._path(".journal.jsonl"))
        self._event({"ev": "start", "record_id": record_id,
                     "meta": self._redactor.scrub({k: v for k, v in self._builder.meta.items() if k != "playbooks"})})

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum in self._previous:
                continue
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        previous = self._previous.get(signum, signal.SIG_DFL)
        if os.getpid() == self._pid and self._builder is not None:
            name = signal.Signals(signum).name
            locked = self._lock.acquire(timeout=2)
            self._quiet = True
            try:
                self._builder.abort("the run received %s" % name, name)
                self._event({"ev": "signal", "signal": name})
                self._finalize(final=True, interactive=False)
            except Exception as exc:
                self._hook_failed("signal", exc)
            finally:
                self._quiet = False
                if locked:
                    self._lock.release()
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:  # SIG_DFL, or None for a handler not set from Python: the default action
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    def _at_exit(self):
        if os.getpid() != self._pid or self._builder is None:
            return
        locked = self._lock.acquire(timeout=2)
        self._quiet = True
        try:
            if not self._finalized:
                self._builder.abort("the run ended before its final statistics (interrupted or crashed)")
                self._finalize(final=True, interactive=False)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
        except Exception:  # at exit nobody can act on a warning any more
            pass
        finally:
            if locked:
                self._lock.release()

    # ------------------------------------------------------------------------------------------ play context

    def _phase(self, task):
        for tag in task.tags or ():
            if isinstance(tag, str) and tag[:6] in ("phase_", "phase:") and len(tag) > 6:
                return tag[6:]
        role = getattr(task, "_role", None)
        if role is not None:
            return role.get_name(include_role_fqcn=False)
        top = task._parent
        while top is not None and getattr(top, "_parent", None) is not None:
            top = top._parent
        return self._sections.get(id(top), "tasks")

    def _play_vars(self, play):
        """Inventory/play variables of the play's first host that the record and the handoff use."""
        manager = play.get_variable_manager()
        hosts = manager._inventory.get_hosts(play.hosts) if manager._inventory is not None else []
        if not hosts:
            return {}
        variables = manager.get_vars(play=play, host=hosts[0], include_hostvars=False)
        templar = Templar(loader=manager._loader, variables=variables) if Templar else None
        found = {}
        for key in PLAY_VARS:
            if key not in variables:
                continue
            try:
                value = templar.template(variables[key]) if templar else variables[key]
            except Exception as exc:
                self._hook_failed("template %s" % key, exc)
                continue
            found[key] = dr.plain(value)
        return found

    def _changes_from_file(self, version):
        path = self._vars.get("release_changelog_file")
        if not path or not version:
            return []
        if not os.path.isabs(path):
            path = os.path.join(self._project_dir(), path)
        with open(path, encoding="utf-8") as handle:
            return _report.changes_from_changelog(handle.read(), version)

    def _changes_from_git(self):
        revision_range = self._vars.get("release_changes_git_range")
        if not revision_range:
            return []
        directory = self._vars.get("release_changes_git_dir") or self._project_dir()
        if not os.path.isabs(directory):
            directory = os.path.join(self._project_dir(), directory)
        return _report.changes_from_git(directory, str(revision_range))

    # ------------------------------------------------------------------------------------------ finishing

    def _finalize(self, host_stats=None, custom=None, final=True, interactive=True):
        builder = self._builder
        if final:
            self._finalized = True
        handoff = dr.handoff_from_vars(self._vars)
        builder.handoff = handoff
        builder.vars = self._vars
        record = builder.build(host_stats=host_stats, custom=custom)
        if "changes" not in handoff:
            try:
                changes = self._changes_from_file(record.get("version"))
                if changes:
                    record["handoff"]["changes"] = changes
            except (OSError, UnicodeDecodeError) as exc:
                self._hook_failed("changelog", exc)
        if "changes" not in handoff and not record["handoff"].get("changes"):
            try:
                changes = self._changes_from_git()
                if changes:
                    record["handoff"]["changes"] = changes
            except _report.GitChangesError as exc:
                self._hook_failed("git log", exc)
        record["callback_warnings"] = list(self._warnings)
        record["callback_time_s"] = round(self._busy_s, 4)  # time spent in this callback's hooks so far
        files = {"record": self._stem + ".json", "journal": self._stem + ".journal.jsonl"}
        formats = [f for f in (self.get_option("report_formats") or []) if f in ("md", "html")]
        for fmt in formats:
            files["handoff_" + fmt] = self._stem + ".handoff." + fmt
        record["files"] = files
        # Learn the secrets of the small parts first, so that they are caught anywhere in the one full pass.
        self._redactor.learn_from({k: record.get(k) for k in ("extra_vars", "release", "handoff", "project")})
        safe = self._redactor.scrub(record)
        dr.write_atomic(self._path(".json"), json.dumps(safe, indent=2, sort_keys=True) + "\n")
        self._event({"ev": "end", "outcome": safe["outcome"], "complete": safe["complete"]})
        for fmt in formats:
            try:
                text = _report.render_markdown(safe) if fmt == "md" else _report.render_html(safe)
                dr.write_atomic(self._path(".handoff." + fmt), self._redactor.text(text))
            except Exception as exc:
                self._hook_failed("handoff " + fmt, exc)
        dsn = self.get_option("record_dsn")
        if dsn:
            self._redactor.text(dsn)
            self._redactor.learn(dsn)
            try:
                dr.store_history(dsn, self.get_option("record_table"), safe)
            except Exception as exc:
                self._hook_failed("history table", exc)
        if self._journal is not None:
            self._journal.sync()
        if interactive and safe["release"] and safe["release_warnings"] and "release data" not in self._warned:
            self._warned.add("release data")
            self._display.warning("%s: the runbook_release data does not follow the release data contract "
                                  "(docs/release-data-contract.md), recorded as it is: %s"
                                  % (NAME, "; ".join(safe["release_warnings"])))
        if interactive and self.get_option("summary"):
            for line in _report.summary_lines(safe):
                self._display.display(line)
            self._display.display("  record: %s" % self._path(".json"))
            if "handoff_html" in files or "handoff_md" in files:
                self._display.display("  handoff: %s" % self._path(".handoff." + ("html" if "handoff_html" in files else "md")))
        return safe

    # ------------------------------------------------------------------------------------------ hooks

    @_guarded
    def v2_playbook_on_start(self, playbook):
        if self._builder is None:
            self._start(playbook)
        path = os.path.abspath(playbook._file_name) if getattr(playbook, "_file_name", None) else "(ad-hoc)"
        self._builder.meta["playbooks"].append(path)
        if self._builder.meta.get("runbook") is None:
            self._builder.meta["runbook"] = os.path.splitext(os.path.basename(path))[0]
        self._event({"ev": "playbook", "path": path})

    @_guarded
    def v2_playbook_on_play_start(self, play):
        self._play = play
        self._sections = {}
        for section in dr.SECTIONS:
            for block in getattr(play, section, None) or []:
                self._sections[id(block)] = section
        manager = play.get_variable_manager()
        extra = dr.plain(manager.extra_vars)
        self._redactor.learn_from(extra)
        meta = self._builder.meta
        meta["extra_vars"] = extra
        meta["job_id"] = meta.get("job_id") or (str(extra["awx_job_id"]) if extra.get("awx_job_id") else None)
        if extra.get("awx_user_name"):
            meta["operator"] = extra["awx_user_name"]
        project = meta.get("project") or {}
        if extra.get("awx_project_revision") and not project.get("commit"):
            project["commit"] = extra["awx_project_revision"]
        name = self._redactor.text(play.get_name())
        self._event({"ev": "play", "name": name})
        if not self._play_vars_done:
            found = self._play_vars(play)
            if found:
                self._redactor.learn_from(found)
                self._vars.update(found)
                self._play_vars_done = True

    def _task_start(self, task, handler=False):
        phase = "handlers" if handler and getattr(task, "_role", None) is None else self._phase(task)
        name = self._redactor.text(task.name or task.action)
        play = self._redactor.text(self._play.get_name()) if self._play is not None else None
        self._builder.task_start(task._uuid, name, task.action, phase, play)
        self._event({"ev": "task", "uid": task._uuid, "name": name, "action": task.action, "phase": phase})

    @_guarded
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._task_start(task)

    @_guarded
    def v2_playbook_on_handler_task_start(self, task):
        self._task_start(task, handler=True)

    def _result(self, result, status):
        host = result.host.get_name()
        changed = result.is_changed()
        if status == "ok" and changed:
            status = "changed"
        uid = result.task._uuid
        self._builder.task_result(uid, host, status, changed)
        self._event({"ev": "result", "uid": uid, "host": host, "status": status, "changed": bool(changed)})
        return host

    @_guarded
    def v2_runner_on_ok(self, result):
        self._result(result, "ok")
        if result.task.action in SET_STATS:
            stats = (result.result.get("ansible_stats") or {}).get("data") or {}
            fragment = stats.get(STATS_KEY)
            if isinstance(fragment, dict):
                self._builder.release_fragment(fragment)
                self._event({"ev": "release", "data": self._redactor.scrub(dr.plain(fragment))})

    @_guarded
    def v2_runner_on_failed(self, result, ignore_errors=False):
        first = self._builder.first_failure
        self._result(result, "ignored" if ignore_errors else "failed")
        failure = self._builder.first_failure
        if failure is not None and failure is not first and self.get_option("include_results"):
            data = result.result
            data = censor(data) if data.get("_ansible_no_log") or result.task.no_log else data
            message = data.get("msg") or data.get("censored") or ""
            failure["message"] = self._redactor.text(str(message))[:500]

    @_guarded
    def v2_runner_on_skipped(self, result):
        self._result(result, "skipped")

    @_guarded
    def v2_runner_on_unreachable(self, result):
        self._result(result, "unreachable")

    @_guarded
    def v2_playbook_on_stats(self, stats):
        if self._builder is None:
            return
        hosts = {h: dr.plain(stats.summarize(h)) for h in sorted(stats.processed)}
        self._finalize(host_stats=hosts, custom=dr.plain(stats.custom), final=True, interactive=True)


def _login_name():
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry in some containers
        return "unknown"
