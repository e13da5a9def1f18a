"""awx/assets.yml (`awx import` data) is well-formed and matches the runbook playbooks of this repository."""

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "awx" / "assets.yml"
RUNBOOKS = {f"playbooks/{name}.yml" for name in
            ("release", "hotfix", "migrate", "rollback", "first_deploy", "scale", "disaster_recovery")}
# AWX's survey question types (awx/main/constants.py SURVEY_TYPE_MAPPING) and the Python type of their defaults.
SURVEY_TYPES = {"text": str, "textarea": str, "password": str, "multiplechoice": str, "multiselect": str,
                "integer": int, "float": (float, int)}
SECRET_NAME = re.compile(r"password|passwd|secret|token|api_key|webhook", re.I)
VARIABLE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@pytest.fixture(scope="module")
def assets():
    return yaml.safe_load(ASSETS.read_text())


def surveys(assets):
    for kind in ("job_templates", "workflow_job_templates"):
        for template in assets.get(kind) or []:
            spec = (template.get("related") or {}).get("survey_spec")
            if spec is not None:
                yield template, spec


def playbook_text(playbook):
    """The playbook and the task files it can import (playbooks/tasks/), where its variables are read."""
    texts = [(REPO / playbook).read_text()]
    texts += [p.read_text() for p in sorted((REPO / "playbooks" / "tasks").glob("*.yml"))]
    return "\n".join(texts)


def test_every_object_has_a_natural_key_of_its_type(assets):
    types = {"organizations": "organization", "credential_types": "credential_type", "projects": "project",
             "inventory": "inventory", "inventory_sources": "inventory_source", "job_templates": "job_template",
             "workflow_job_templates": "workflow_job_template"}
    assert set(assets) <= set(types), "awx import only reads these top-level resources"
    for resource, kind in types.items():
        for item in assets.get(resource) or []:
            assert item["natural_key"]["type"] == kind, item
            assert item["natural_key"]["name"] == item["name"], item


def test_every_job_template_runs_one_of_the_seven_runbooks(assets):
    playbooks = [t["playbook"] for t in assets["job_templates"]]
    assert sorted(playbooks) == sorted(RUNBOOKS), "one job template per runbook"
    projects = {p["name"] for p in assets["projects"]}
    inventories = {i["name"] for i in assets["inventory"]}
    for template in assets["job_templates"]:
        assert template["project"]["name"] in projects
        assert template["inventory"]["name"] in inventories
        assert template["survey_enabled"] is True


def test_every_playbook_in_the_repository_has_a_job_template(assets):
    templated = {t["playbook"] for t in assets["job_templates"]}
    existing = {f"playbooks/{p.name}" for p in (REPO / "playbooks").glob("*.yml")}
    assert existing <= RUNBOOKS, f"a runbook without an AWX definition: {sorted(existing - RUNBOOKS)}"
    assert existing <= templated


def test_survey_specs_are_well_formed(assets):
    seen = 0
    for template, spec in surveys(assets):
        seen += 1
        assert isinstance(spec["name"], str) and isinstance(spec["description"], str)
        assert isinstance(spec["spec"], list) and spec["spec"], template["name"]
        variables = [q["variable"] for q in spec["spec"]]
        assert len(variables) == len(set(variables)), f"a variable asked twice in {template['name']}"
        for question in spec["spec"]:
            where = f"{template['name']}: {question.get('variable')}"
            for field in ("type", "question_name", "variable"):
                assert isinstance(question.get(field), str) and question[field], where
            assert isinstance(question.get("required"), bool), where
            assert VARIABLE.match(question["variable"]), where
            assert not question["variable"].startswith(("awx_", "tower_")), "reserved prefix: " + where
            qtype = question["type"]
            assert qtype in SURVEY_TYPES, where
            default = question.get("default", "")
            if default != "":
                assert isinstance(default, SURVEY_TYPES[qtype]), where
            for key in ("min", "max"):
                assert question.get(key) is None or isinstance(question[key], int), where
            if question.get("min") is not None and question.get("max") is not None:
                assert question["min"] <= question["max"], where
            if qtype in ("multiplechoice", "multiselect"):
                choices = question.get("choices")
                assert isinstance(choices, list) and choices and all(isinstance(c, str) for c in choices), where
                if default != "":
                    assert all(d in choices for d in default.splitlines()), where
            if qtype == "text" and isinstance(default, str) and default:
                assert question.get("min", 0) <= len(default) <= question.get("max", 1024), where
    assert seen == len(assets["job_templates"]) + len(assets["workflow_job_templates"])


def test_the_version_question_bounds_match_the_playbook_regex(assets):
    for template, spec in surveys(assets):
        for question in spec["spec"]:
            if question["variable"] == "version":
                assert (question["type"], question["min"], question["max"]) == ("text", 1, 128), template["name"]
                assert "^[A-Za-z0-9_.-]{1,128}$" in question["question_description"]
    assert "version is match('^[A-Za-z0-9_.-]{1,128}$')" in (REPO / "playbooks/tasks/validate_inputs.yml").read_text()


def test_choices_are_what_the_issue_and_playbooks_accept(assets):
    questions = {(t["playbook"], q["variable"]): q for t in assets["job_templates"]
                 for q in t["related"]["survey_spec"]["spec"]}
    for (_playbook, variable), question in questions.items():
        if variable == "target_environment":
            assert question["choices"] == ["staging", "production"]
        if variable == "severity":
            assert question["choices"] == ["P0", "P1", "P2", "P3"]
    hotfix = {v for (p, v) in questions if p == "playbooks/hotfix.yml"}
    assert {"version", "hotfix_reason", "hotfix_ticket", "target_environment"} <= hotfix
    rollback = {v for (p, v) in questions if p == "playbooks/rollback.yml"}
    assert {"rollback_to", "severity"} <= rollback
    assert ("playbooks/scale.yml", "scale") in questions


def test_secrets_are_password_questions_or_credentials(assets):
    for template, spec in surveys(assets):
        for question in spec["spec"]:
            if SECRET_NAME.search(question["variable"]):
                assert question["type"] == "password", f"{template['name']}: {question['variable']}"
    for template in assets["job_templates"] + assets["workflow_job_templates"]:
        assert "extra_vars" not in template or not SECRET_NAME.search(str(template["extra_vars"]))
    for ctype in assets["credential_types"]:
        assert ctype["kind"] in ("cloud", "net"), "custom credential types are cloud or net"
        fields = {f["id"]: f for f in ctype["inputs"]["fields"]}
        assert set(ctype["inputs"].get("required", [])) <= set(fields)
        for name in ctype["injectors"]["env"].values():
            used = re.fullmatch(r"\{\{ *(\w+) *\}\}", name).group(1)
            assert used in fields and fields[used].get("secret") is True, ctype["name"]


def test_credential_types_inject_what_the_production_inventory_reads(assets):
    injected = {var for c in assets["credential_types"] for var in c["injectors"]["env"]}
    assert injected == {"RELEASE_DB_PASSWORD", "STATUSPAGE_API_KEY", "RELEASE_CHAT_WEBHOOK_URL"}
    production = "\n".join(p.read_text() for p in (REPO / "inventories" / "production").rglob("*.yml"))
    for var in injected:
        assert f"'ansible.builtin.env', '{var}'" in production, var


def test_survey_variables_are_read_by_the_playbooks(assets):
    for template, spec in surveys(assets):
        playbooks = [template["playbook"]] if "playbook" in template else sorted(
            {n["unified_job_template"]["name"] for n in template["related"]["workflow_nodes"]
             if "unified_job_template" in n})
        if "playbook" not in template:
            by_name = {t["name"]: t["playbook"] for t in assets["job_templates"]}
            playbooks = [by_name[name] for name in playbooks]
        for playbook in playbooks:
            if not (REPO / playbook).exists():
                continue  # a runbook still to be written (awx/README.md lists which exist)
            text = playbook_text(playbook)
            for question in spec["spec"]:
                assert re.search(r"\b%s\b" % re.escape(question["variable"]), text), \
                    f"{playbook} never reads {question['variable']}"


def test_the_release_workflow_is_staging_then_approval_then_production(assets):
    (workflow,) = assets["workflow_job_templates"]
    nodes = {n["identifier"]: n for n in workflow["related"]["workflow_nodes"]}
    for node in nodes.values():
        assert node["natural_key"]["identifier"] == node["identifier"]
        assert node["natural_key"]["workflow_job_template"] == workflow["natural_key"]

    def next_of(node):
        return [n["identifier"] for n in node.get("related", {}).get("success_nodes", [])]

    staging, approval, production = nodes["release-staging"], nodes["approve-production"], nodes["release-production"]
    assert next_of(staging) == ["approve-production"]
    assert next_of(approval) == ["release-production"]
    assert next_of(production) == []
    assert "unified_job_template" not in approval and approval["related"]["create_approval_template"]["timeout"] > 0
    release = next(t for t in assets["job_templates"] if t["playbook"] == "playbooks/release.yml")
    for node, environment in ((staging, "staging"), (production, "production")):
        assert node["unified_job_template"]["name"] == release["name"]
        assert node["extra_data"] == {"target_environment": environment}
        assert node["inventory"]["name"] == f"runbook {environment}"
    assert release["ask_inventory_on_launch"] is True, "the nodes set the inventory"
