# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Readers for the evidence the go/no-go gate (``runbook.release.release_gate``) judges.

Each reader takes a path and returns plain data, or raises ``EvidenceError`` saying which file and what is
wrong with it: approvals files (YAML or JSON), JUnit XML test reports, vulnerability reports (Trivy, Grype or
a plain ``[{id, cvss}]`` list), deployment records (the ``deployment_record`` callback's layout or the plain
release data contract) and the freeze file. Nothing here decides anything; ``_release_gate`` does.
Standard library only, plus PyYAML when an approvals file is YAML.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET

try:
    import yaml
    HAS_YAML = True
except ImportError:  # pragma: no cover - ansible-core always brings PyYAML to the controller
    yaml = None
    HAS_YAML = False

APPROVAL_KEYS = ("approver", "role", "version", "approved_at")
MAX_EVIDENCE_BYTES = 64 * 1024 * 1024  # a report bigger than this is not read into memory
FREEZE_LINES = 5
FREEZE_CHARS = 500
_DIGEST_RE = re.compile(r"(sha256:[0-9a-f]{64})")


class GateInputError(Exception):
    """Bad input: the gate stops before evaluating anything. The message says what, the value, and the fix."""


class EvidenceError(Exception):
    """A piece of evidence cannot be used; the criterion that needs it fails with this message."""


def _read_text(path, what):
    try:
        size = os.path.getsize(path)
        if size > MAX_EVIDENCE_BYTES:
            raise EvidenceError("%s %s is %d bytes, more than the %d the gate reads" % (what, path, size, MAX_EVIDENCE_BYTES))
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise EvidenceError("%s %s does not exist" % (what, path)) from None
    except IsADirectoryError:
        raise EvidenceError("%s %s is a directory, not a file" % (what, path)) from None
    except OSError as exc:
        raise EvidenceError("%s %s cannot be read: %s" % (what, path, exc.strerror or exc)) from None


# ---------------------------------------------------------------------------------------------- approvals

def check_approval_entries(entries, source):
    """The approvals as a list of dicts with every key present; GateInputError names the bad entry."""
    if not isinstance(entries, list):
        raise GateInputError("%s: approvals must be a list of {approver, role, version, approved_at}, got %s"
                             % (source, type(entries).__name__))
    out = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise GateInputError("%s: approval #%d is a %s, not a dict with approver, role, version and approved_at"
                                 % (source, index + 1, type(entry).__name__))
        missing = [k for k in APPROVAL_KEYS if entry.get(k) in (None, "")]
        if missing:
            raise GateInputError("%s: approval #%d (%s) lacks %s; every approval needs %s"
                                 % (source, index + 1, json.dumps(entry, default=str, sort_keys=True),
                                    ", ".join(missing), ", ".join(APPROVAL_KEYS)))
        approval = {k: str(entry[k]).strip() for k in APPROVAL_KEYS}
        approval["source"] = source
        out.append(approval)
    return out


def load_approvals_file(path):
    """Approvals from a YAML or JSON file holding ``approvals: [...]`` (or the bare list)."""
    try:
        text = _read_text(path, "approvals file")
    except EvidenceError as exc:
        raise GateInputError("%s; fix approvals_file" % exc) from None
    if HAS_YAML:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise GateInputError("approvals file %s is not valid YAML: %s" % (path, str(exc).replace("\n", " "))) from None
    else:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise GateInputError("approvals file %s is not valid JSON (PyYAML is not installed, so YAML cannot be "
                                 "read): %s" % (path, exc)) from None
    if isinstance(data, dict):
        if "approvals" not in data:
            raise GateInputError("approvals file %s has no 'approvals' key (keys: %s); put the list under approvals:"
                                 % (path, ", ".join(sorted(str(k) for k in data)) or "none"))
        data = data["approvals"]
    if data is None:
        data = []
    return check_approval_entries(data, "approvals file %s" % path)


# ---------------------------------------------------------------------------------------------- JUnit

def _int_attr(element, name, path):
    value = element.get(name)
    if value in (None, ""):
        return 0
    try:
        return int(float(value))
    except ValueError:
        raise EvidenceError("test report %s: <%s %s=%r> is not a number" % (path, element.tag, name, value)) from None


def _suite_counts(suite, path):
    if suite.get("tests") not in (None, ""):
        return {"tests": _int_attr(suite, "tests", path), "failures": _int_attr(suite, "failures", path),
                "errors": _int_attr(suite, "errors", path), "skipped": _int_attr(suite, "skipped", path)}
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for case in suite.iter("testcase"):
        counts["tests"] += 1
        for child, key in (("failure", "failures"), ("error", "errors"), ("skipped", "skipped")):
            if case.find(child) is not None:
                counts[key] += 1
                break
    return counts


def read_junit(path):
    """{tests, failures, errors, skipped} of a JUnit XML report (<testsuite> or <testsuites> root)."""
    text = _read_text(path, "test report")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise EvidenceError("test report %s is not well-formed XML: %s" % (path, exc)) from None
    if root.tag not in ("testsuite", "testsuites"):
        raise EvidenceError("test report %s is not a JUnit report: its root element is <%s>, not <testsuites> or "
                            "<testsuite>" % (path, root.tag))
    # Leaf suites only: a <testsuites> total (or a nesting suite) would count the same tests twice.
    leaves = [s for s in root.iter("testsuite") if s.find(".//testsuite") is None]
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in leaves or [root]:
        for key, value in _suite_counts(suite, path).items():
            totals[key] += value
    if any(v < 0 for v in totals.values()) or totals["failures"] + totals["errors"] + totals["skipped"] > totals["tests"]:
        raise EvidenceError("test report %s has inconsistent counts %s" % (path, json.dumps(totals, sort_keys=True)))
    return totals


# ---------------------------------------------------------------------------------------------- vulnerabilities

def _score(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _max(scores):
    scores = [s for s in scores if s is not None]
    return max(scores) if scores else None


def _trivy(data):
    findings = []
    for result in data.get("Results") or []:
        if not isinstance(result, dict):
            continue
        for vuln in result.get("Vulnerabilities") or []:
            if not isinstance(vuln, dict):
                continue
            sources = vuln.get("CVSS") if isinstance(vuln.get("CVSS"), dict) else {}
            score = _max(_score(s.get(k)) for s in sources.values() if isinstance(s, dict) for k in ("V3Score", "V40Score"))
            findings.append({"id": vuln.get("VulnerabilityID") or "?", "cvss": score,
                             "severity": vuln.get("Severity"), "package": vuln.get("PkgName"),
                             "target": result.get("Target")})
    return findings


def _grype_scores(entries):
    scores = []
    for entry in entries or []:
        if isinstance(entry, dict) and str(entry.get("version", "3")).startswith(("3", "4")):
            scores.append(_score((entry.get("metrics") or {}).get("baseScore")))
    return scores


def _grype(data):
    findings = []
    for match in data.get("matches") or []:
        if not isinstance(match, dict):
            continue
        vuln = match.get("vulnerability") if isinstance(match.get("vulnerability"), dict) else {}
        scores = _grype_scores(vuln.get("cvss"))
        for related in match.get("relatedVulnerabilities") or []:
            if isinstance(related, dict):
                scores += _grype_scores(related.get("cvss"))
        artifact = match.get("artifact") if isinstance(match.get("artifact"), dict) else {}
        findings.append({"id": vuln.get("id") or "?", "cvss": _max(scores), "severity": vuln.get("severity"),
                         "package": artifact.get("name"), "target": None})
    return findings


def _plain(data, path):
    findings = []
    for index, entry in enumerate(data):
        if not isinstance(entry, dict) or not entry.get("id"):
            raise EvidenceError("vulnerability report %s: entry #%d is not {id, cvss}" % (path, index + 1))
        score = _score(entry.get("cvss"))
        if entry.get("cvss") is not None and score is None:
            raise EvidenceError("vulnerability report %s: %s has cvss %r, not a number" % (path, entry["id"], entry["cvss"]))
        findings.append({"id": str(entry["id"]), "cvss": score, "severity": entry.get("severity"),
                         "package": entry.get("package"), "target": None})
    return findings


def read_vulnerabilities(path):
    """(format, findings) of a Trivy JSON, Grype JSON or plain ``[{id, cvss}]`` report; cvss is None when unscored.

    Scores are CVSS v3 or v4 base scores; when a finding has several (per source, or related advisories), the
    highest counts.
    """
    text = _read_text(path, "vulnerability report")
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EvidenceError("vulnerability report %s is not valid JSON: %s" % (path, exc)) from None
    if isinstance(data, dict) and "Results" in data:
        return "trivy", _trivy(data)
    if isinstance(data, dict) and "matches" in data:
        return "grype", _grype(data)
    if isinstance(data, list):
        return "plain", _plain(data, path)
    keys = ", ".join(sorted(data)) if isinstance(data, dict) else type(data).__name__
    raise EvidenceError("vulnerability report %s is not a Trivy (Results), Grype (matches) or [{id, cvss}] report "
                        "(found: %s)" % (path, keys or "an empty object"))


# ---------------------------------------------------------------------------------------------- deployment records

def _digests(value):
    """The sha256 digests named by an image entry: a str, a list, or a dict with digest/repo_digests/image_id."""
    if isinstance(value, str):
        return set(_DIGEST_RE.findall(value)) or {value}
    if isinstance(value, (list, tuple)):
        found = set()
        for item in value:
            found |= _digests(item)
        return found
    if isinstance(value, dict):
        found = set()
        for key in ("digest", "repo_digests", "image_id"):
            if value.get(key):
                found |= _digests(value[key])
        return found
    return set()


def image_digests(images):
    """service -> set of digests, from the ``images`` of a record or of the gate's options."""
    if not isinstance(images, dict):
        return {}
    return {str(service): _digests(value) for service, value in images.items()}


def normalize_record(raw, source):
    """One deployment as the soak criterion needs it, from either record layout; None when it is not one.

    The ``deployment_record`` callback keeps the release data contract under ``release`` and its own verdict of the
    run (``outcome``, ``check_mode``) at the top; a plain contract record has the fields at the top. Image digests
    come from ``images`` or, in the contract, from ``preflight.digests``.
    """
    if not isinstance(raw, dict):
        return None
    release = raw.get("release") if isinstance(raw.get("release"), dict) else raw
    environment = raw.get("environment") or release.get("environment")
    version = raw.get("version") or release.get("version")
    if not environment or not version:
        return None
    gate = release.get("gate") if isinstance(release.get("gate"), dict) else {}
    # Digests: the record's own `images`, else those the preflight role verified in the registry for that run.
    preflight = release.get("preflight") if isinstance(release.get("preflight"), dict) else {}
    images = raw.get("images") if "images" in raw else preflight.get("digests")
    return {
        "environment": str(environment),
        "version": str(version),
        "outcome": raw.get("outcome") or release.get("outcome"),
        "finished_at": raw.get("finished_at") or release.get("finished_at"),
        "check_mode": bool(raw.get("check_mode")),
        "stopped_by_gate": gate.get("go") is False,
        "images": image_digests(images) if images else None,
        "run_id": raw.get("run_id") or release.get("run_id"),
        "source": source,
    }


def read_records_dir(path):
    """(records, notes): every ``*.json`` deployment record under path (not recursive); notes name skipped files."""
    try:
        names = sorted(n for n in os.listdir(path) if n.endswith(".json"))
    except OSError as exc:
        raise EvidenceError("promotion_records_dir %s cannot be listed: %s" % (path, exc.strerror or exc)) from None
    records, notes = [], []
    for name in names:
        file_path = os.path.join(path, name)
        try:
            raw = json.loads(_read_text(file_path, "deployment record"))
        except EvidenceError as exc:
            notes.append(str(exc))
            continue
        except ValueError as exc:
            notes.append("deployment record %s is not valid JSON (%s): skipped" % (file_path, exc))
            continue
        record = normalize_record(raw, file_path)
        if record is None:
            notes.append("%s is not a deployment record (no environment and version): skipped" % file_path)
        else:
            records.append(record)
    return records, notes


# ---------------------------------------------------------------------------------------------- freeze

def read_freeze(path):
    """None when there is no freeze file; else the first lines of it (or why they cannot be shown)."""
    if not os.path.lexists(path):
        return None
    if os.path.isdir(path):
        return "(a directory)"
    try:
        with open(path, "rb") as handle:
            head = handle.read(FREEZE_CHARS * 4).decode("utf-8", errors="replace")
    except OSError as exc:
        return "(cannot be read: %s)" % (exc.strerror or exc)
    lines = [line.rstrip() for line in head.splitlines() if line.strip()][:FREEZE_LINES]
    text = " / ".join(lines)
    if len(text) > FREEZE_CHARS:
        text = text[:FREEZE_CHARS] + "..."
    return text or "(empty)"
