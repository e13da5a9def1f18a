"""The seed coverage map, docs/seed-coverage.yml: every checklist item and procedural step of the seeds' release and
hotfix procedures is mapped to the task, role, gate criterion, module or callback that implements it, or says why
not - and every one of those references must exist.

Needs only PyYAML. The seeds live outside the repository (../shared/seeds); a clean clone has no such directory, so
the seed file names are checked against a fixed list, and the quotes against the seeds only when they are there.

Run as a script for the counts (the closing note quotes them):

    .venv/bin/python tests/unit/test_seed_coverage.py --summary [--gaps]
"""

import argparse
import ast
import collections
import difflib
import functools
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
MAP = REPO / "docs" / "seed-coverage.yml"
SEEDS_DIR = REPO.parent / "shared" / "seeds"

SEED_FILES = (
    "000_4a1561f0b48f111c.txt",
    "001_2c3e2ca605c4bdc7.txt",
    "002_48c69021e9ccbb3d.txt",
    "003_462d50985a236a57.txt",
    "004_9c95be3f6f33a642.txt",
)
STATUSES = ("automated", "gated", "out_of_scope", "other_runbook")
REF_KINDS = ("task", "role", "gate", "module", "callback", "preflight")
ITEM_KEYS = {"id", "seed", "section", "quote", "status", "by", "reason", "runbook", "needs", "note", "gap"}
EXCLUDED_KEYS = {"seed", "section", "quote", "reason"}
ID_RE = re.compile(r"^(\d{3})-[a-z0-9]+(?:-[a-z0-9]+)*-\d{2,3}$")
PLAY_SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")
BLOCK_SECTIONS = ("block", "rescue", "always")


# --- reading ------------------------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """SafeLoader that reads Ansible's tags (!unsafe, !vault) as plain values."""


def _any_tag(loader, _suffix, node):
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


_Loader.add_multi_constructor("!", _any_tag)


@functools.lru_cache(maxsize=None)
def load_map():
    """The map, read once per process (nothing changes it)."""
    return yaml.load(MAP.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def _python_constant(path, name):
    """The value of a top-level `NAME = <literal>` in a Python file, read without importing it (no Ansible)."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("%s defines no %s" % (path.relative_to(REPO), name))


@functools.lru_cache(maxsize=None)
def gate_criteria():
    doc = yaml.safe_load(_python_constant(REPO / "plugins" / "modules" / "release_gate.py", "DOCUMENTATION"))
    return tuple(doc["options"]["criteria"]["choices"])


def runbooks():
    return _python_constant(REPO / "plugins" / "module_utils" / "_release_data.py", "RUNBOOKS")


@functools.lru_cache(maxsize=None)
def task_names(path):
    """Names of every task and block of a task file or playbook, at any depth."""
    names = set()

    def walk(tasks):
        for task in tasks if isinstance(tasks, list) else []:
            if not isinstance(task, dict):
                continue
            if isinstance(task.get("name"), str):
                names.add(task["name"])
            for key in BLOCK_SECTIONS:
                walk(task.get(key))

    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)
    for entry in doc if isinstance(doc, list) else []:
        if isinstance(entry, dict) and ("hosts" in entry or "import_playbook" in entry):
            for key in PLAY_SECTIONS:
                walk(entry.get(key))
        else:
            walk([entry])
    return names


def normalise(text):
    """Case-insensitive, whitespace collapsed, markdown bold markers removed."""
    return " ".join(text.replace("**", "").split()).casefold()


# --- checks -------------------------------------------------------------------------------------------------------

def ref_key(ref):
    """A hashable, readable key of one `by` entry: `role: db_backup`, `task: file :: name`."""
    (kind, value), = ref.items()
    if kind == "task":
        return "task: %s :: %s" % (value.get("file"), value.get("name"))
    return "%s: %s" % (kind, value)


def resolve(ref):
    """None when the reference exists, else why not."""
    (kind, value), = ref.items()
    if kind == "task":
        if not isinstance(value, dict) or set(value) != {"file", "name"}:
            return "a task reference is {file, name}, not %r" % (value,)
        path = REPO / value["file"]
        if not path.is_file():
            return "%s does not exist" % value["file"]
        try:
            names = task_names(path)
        except yaml.YAMLError as exc:
            return "%s is not YAML: %s" % (value["file"], exc)
        if value["name"] in names:
            return None
        close = difflib.get_close_matches(value["name"], sorted(names), n=2, cutoff=0.6)
        return "%s has no task or block named %r%s" % (
            value["file"], value["name"], ("; close: %s" % " | ".join(close)) if close else "")
    if kind == "role":
        tasks_main = REPO / "roles" / str(value) / "tasks" / "main.yml"
        return None if tasks_main.is_file() else "roles/%s/tasks/main.yml does not exist" % value
    if kind == "gate":
        criteria = gate_criteria()
        return None if value in criteria else "%r is not a release_gate criterion (%s)" % (value, ", ".join(criteria))
    if kind == "module":
        return None if (REPO / "plugins" / "modules" / ("%s.py" % value)).is_file() else \
            "plugins/modules/%s.py does not exist" % value
    if kind == "callback":
        return None if (REPO / "plugins" / "callback" / ("%s.py" % value)).is_file() else \
            "plugins/callback/%s.py does not exist" % value
    if kind == "preflight":
        setting = "preflight_%s" % value
        role = REPO / "roles" / "preflight"
        defaults = yaml.safe_load((role / "defaults" / "main.yml").read_text(encoding="utf-8")) or {}
        if setting not in defaults:
            return "roles/preflight/defaults/main.yml defines no %s" % setting
        used = re.compile(r"\b%s\b" % re.escape(setting))
        if not any(used.search(p.read_text(encoding="utf-8")) for p in (role / "tasks").glob("*.yml")):
            return "no task of roles/preflight uses %s" % setting
        return None
    return "unknown reference kind %r (one of %s)" % (kind, ", ".join(REF_KINDS))


def item_problems(item, known_runbooks):
    """Every problem of one item's fields (not of its references)."""
    where = item.get("id", "<no id>") if isinstance(item, dict) else repr(item)
    if not isinstance(item, dict):
        return ["%s: an item is a mapping" % where]
    problems = []
    for key in ("id", "seed", "section", "quote", "status"):
        if not isinstance(item.get(key), str) or not item[key].strip():
            problems.append("%s: %s is missing or empty" % (where, key))
    unknown = set(item) - ITEM_KEYS
    if unknown:
        problems.append("%s: unknown field(s) %s" % (where, ", ".join(sorted(unknown))))
    seed, status = item.get("seed"), item.get("status")
    if seed not in SEED_FILES:
        problems.append("%s: seed %r is not one of the seed files %s" % (where, seed, ", ".join(SEED_FILES)))
    match = ID_RE.match(str(item.get("id", "")))
    if not match:
        problems.append("%s: id does not look like <seed number>-<section key>-<number>" % where)
    elif isinstance(seed, str) and match.group(1) != seed[:3]:
        problems.append("%s: id does not start with its seed's number %s" % (where, seed[:3]))
    if status not in STATUSES:
        problems.append("%s: status %r is not one of %s" % (where, status, ", ".join(STATUSES)))
    by = item.get("by", [])
    if not isinstance(by, list) or not all(isinstance(r, dict) and len(r) == 1 for r in by):
        problems.append("%s: by is a list of one-key mappings (task, role, gate, ...)" % where)
        by = []
    for ref in by:
        (kind, _value), = ref.items()
        if kind not in REF_KINDS:
            problems.append("%s: unknown reference kind %r (one of %s)" % (where, kind, ", ".join(REF_KINDS)))
    if status in ("automated", "gated") and not by:
        problems.append("%s: %s needs at least one `by` reference" % (where, status))
    if status == "out_of_scope" and not str(item.get("reason", "")).strip():
        problems.append("%s: out_of_scope needs a reason" % where)
    if status == "other_runbook" and item.get("runbook") not in known_runbooks:
        problems.append("%s: other_runbook needs runbook, one of %s" % (where, ", ".join(known_runbooks)))
    if "runbook" in item and status != "other_runbook":
        problems.append("%s: runbook is only for other_runbook" % where)
    for key in ("reason", "note", "needs"):
        if key in item and (not isinstance(item[key], str) or not item[key].strip()):
            problems.append("%s: %s must be a non-empty string" % (where, key))
    if "gap" in item and item["gap"] is not True:
        problems.append("%s: gap is `true` or absent" % where)
    return problems


def unique_refs(data):
    """Reference key -> (reference, ids of the items that use it)."""
    refs = {}
    for item in data.get("items") or []:
        if not isinstance(item, dict) or not isinstance(item.get("by"), list):
            continue
        for ref in item["by"]:
            if isinstance(ref, dict) and len(ref) == 1:
                refs.setdefault(ref_key(ref), (ref, []))[1].append(item.get("id"))
    return refs


def summary(data):
    """Counts per status, per seed and status, gaps, configuration needed, unresolved references."""
    items = data["items"]
    by_status = collections.Counter(i["status"] for i in items)
    by_seed = collections.defaultdict(collections.Counter)
    for item in items:
        by_seed[item["seed"]][item["status"]] += 1
    unresolved = {}
    for key, (ref, ids) in unique_refs(data).items():
        why = resolve(ref)
        if why:
            unresolved[key] = (why, ids)
    return {
        "total": len(items),
        "by_status": {s: by_status.get(s, 0) for s in STATUSES},
        "by_seed": {seed: {s: by_seed[seed].get(s, 0) for s in STATUSES} for seed in SEED_FILES},
        "gaps": [i for i in items if i.get("gap")],
        "automated_needing_config": sum(1 for i in items if i["status"] == "automated" and i.get("needs")),
        "gated_needing_config": sum(1 for i in items if i["status"] == "gated" and i.get("needs")),
        "excluded_sections": len(data.get("excluded") or []),
        "unresolved": unresolved,
    }


def format_summary(data, gaps=False):
    facts = summary(data)
    width = max(len(s) for s in STATUSES)
    lines = ["docs/seed-coverage.yml: %d items from %d seeds (%d sections excluded as not release/hotfix)"
             % (facts["total"], len(SEED_FILES), facts["excluded_sections"]), ""]
    lines.append("%-8s " % "seed" + " ".join("%*s" % (width, s) for s in STATUSES) + "  total")
    for seed, counts in facts["by_seed"].items():
        lines.append("%-8s " % seed[:3] + " ".join("%*d" % (width, counts[s]) for s in STATUSES)
                     + "  %5d" % sum(counts.values()))
    lines.append("%-8s " % "all" + " ".join("%*d" % (width, facts["by_status"][s]) for s in STATUSES)
                 + "  %5d" % facts["total"])
    lines += ["",
              "automated items that do nothing until configured (`needs`): %d" % facts["automated_needing_config"],
              "gated items that are NO-GO until their evidence is configured (`needs`): %d"
              % facts["gated_needing_config"],
              "gaps (`gap: true`): %d" % len(facts["gaps"])]
    if facts["unresolved"]:
        lines += ["", "unresolved references (%d):" % len(facts["unresolved"])]
        for key, (why, ids) in sorted(facts["unresolved"].items()):
            lines.append("  %s - %s (%d item%s)" % (key, why, len(ids), "" if len(ids) == 1 else "s"))
    else:
        lines += ["", "every reference resolves"]
    if gaps:
        lines += ["", "gaps:"]
        for item in facts["gaps"]:
            lines.append("  %s [%s] %s" % (item["id"], item["status"], item["quote"]))
            lines.append("      %s" % (item.get("reason") or item.get("note")))
    return "\n".join(lines)


# --- tests --------------------------------------------------------------------------------------------------------

def pytest_generate_tests(metafunc):
    if "ref_entry" in metafunc.fixturenames:
        refs = unique_refs(load_map())
        metafunc.parametrize("ref_entry", sorted(refs.items()), ids=sorted(refs))


def test_map_lists_the_five_seeds():
    data = load_map()
    assert set(data) == {"seeds", "excluded", "items"}, "top-level keys: seeds, excluded, items"
    assert [s["file"] for s in data["seeds"]] == list(SEED_FILES)
    seeds_with_items = {i.get("seed") for i in data["items"]}
    assert seeds_with_items == set(SEED_FILES), "every seed has items, and only these seeds"


def test_items_have_the_fields_their_status_needs():
    data = load_map()
    known_runbooks = runbooks()
    problems = [p for item in data["items"] for p in item_problems(item, known_runbooks)]
    assert not problems, "\n".join(problems)


def test_ids_are_unique():
    ids = collections.Counter(item.get("id") for item in load_map()["items"])
    duplicates = sorted(str(i) for i, n in ids.items() if n > 1)
    assert not duplicates, "duplicate ids: " + ", ".join(duplicates)


def test_excluded_sections_say_why():
    problems = []
    for entry in load_map()["excluded"]:
        if set(entry) != EXCLUDED_KEYS or not all(isinstance(entry[k], str) and entry[k].strip() for k in entry):
            problems.append("%r: an exclusion has exactly seed, section, quote and reason, all non-empty" % (entry,))
        elif entry["seed"] not in SEED_FILES:
            problems.append("%r: seed is not one of %s" % (entry, ", ".join(SEED_FILES)))
    assert not problems, "\n".join(problems)


def test_reference_resolves(ref_entry):
    key, (ref, ids) = ref_entry
    why = resolve(ref)
    assert why is None, "%s: %s (used by %s)" % (key, why, ", ".join(ids))


def test_quotes_are_in_their_seeds():
    if not SEEDS_DIR.is_dir():
        import pytest  # only needed here: the module itself runs without pytest (--summary)
        pytest.skip("no seeds next to the repository (%s): quotes not checked" % SEEDS_DIR)
    missing_files = [name for name in SEED_FILES if not (SEEDS_DIR / name).is_file()]
    assert not missing_files, "seed files missing from %s: %s" % (SEEDS_DIR, ", ".join(missing_files))
    texts = {name: normalise((SEEDS_DIR / name).read_text(encoding="utf-8")) for name in SEED_FILES}
    data = load_map()
    entries = [(i.get("id"), i) for i in data["items"]]
    entries += [("excluded %s" % e.get("section"), e) for e in data["excluded"]]
    missing = ["%s: %r is not in %s" % (where, e.get("quote"), e.get("seed")) for where, e in entries
               if e.get("seed") in texts and normalise(str(e.get("quote"))) not in texts[e["seed"]]]
    assert not missing, "\n".join(missing)


def test_summary_counts_every_item():
    data = load_map()
    facts = summary(data)
    print(format_summary(data))
    assert facts["total"] == len(data["items"]) > 0
    assert sum(facts["by_status"].values()) == facts["total"], "an item has a status outside %s" % (STATUSES,)
    assert sum(sum(c.values()) for c in facts["by_seed"].values()) == facts["total"]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Counts of docs/seed-coverage.yml per status and seed.")
    parser.add_argument("--summary", action="store_true", help="print the counts (the default)")
    parser.add_argument("--gaps", action="store_true", help="also list the items marked gap: true")
    args = parser.parse_args(argv)
    print(format_summary(load_map(), gaps=args.gaps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
