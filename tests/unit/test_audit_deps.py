"""`make audit` fails on a vulnerability with a fix and on an unaudited package, not on an unfixed one; what
pip-audit could not look up is audited from PyPI's project JSON when pinned at the latest release."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit-deps.py"


def load_module():  # the script is not a package: loaded by path
    spec = importlib.util.spec_from_file_location("audit_deps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_vulnerabilities_are_split_by_whether_a_fix_exists() -> None:
    report = {"dependencies": [
        {"name": "jinja2", "version": "2.10", "vulns": [{"id": "GHSA-1", "fix_versions": ["2.10.1"]}]},
        {"name": "foo", "version": "1.0", "vulns": [{"id": "PYSEC-2", "fix_versions": []}]},
        {"name": "bar", "version": "2.0", "skip_reason": "Dependency not found on PyPI"},
        {"name": "clean", "version": "3.0", "vulns": []},
    ]}
    fixable, unfixed, unaudited = load_module().classify(report)
    assert fixable == ["jinja2==2.10 GHSA-1 fixed in 2.10.1"]
    assert unfixed == ["foo==1.0 PYSEC-2 fixed in -"]
    assert unaudited == ["bar: Dependency not found on PyPI"]


PROJECTS = {
    "latest": {"info": {"version": "2.0"}, "vulnerabilities": [
        {"id": "PYSEC-9", "fixed_in": ["2.1"], "withdrawn": None},
        {"id": "GHSA-old", "fixed_in": ["1.0"], "withdrawn": "2025-01-01T00:00:00"}]},
    "behind": {"info": {"version": "5.0"}, "vulnerabilities": []},
}


def test_a_package_pip_audit_skipped_is_audited_from_its_project_json_when_pinned_at_the_latest() -> None:
    module = load_module()
    report = {"dependencies": [
        {"name": "Latest", "skip_reason": "Dependency not found on PyPI"},
        {"name": "behind", "skip_reason": "Dependency not found on PyPI"},
        {"name": "clean", "version": "3.0", "vulns": []},
    ]}
    completed = module.complete(report, {"latest": "2.0", "behind": "4.0"},
                                fetch=lambda name: PROJECTS[name.lower()])
    fixable, unfixed, unaudited = module.classify(completed)
    assert fixable == ["Latest==2.0 PYSEC-9 fixed in 2.1"]  # the withdrawn one is not counted
    assert unfixed == []
    assert len(unaudited) == 1 and unaudited[0].startswith("behind: Dependency not found on PyPI")
    assert "latest release 5.0" in unaudited[0]
    assert completed["dependencies"][2] == report["dependencies"][2]


def test_an_unreachable_project_json_leaves_the_package_unaudited() -> None:
    module = load_module()

    def unreachable(name: str) -> dict:
        raise OSError("Could not resolve host")

    completed = module.complete({"dependencies": [{"name": "x", "skip_reason": "not found"}]}, {"x": "1.0"},
                                fetch=unreachable)
    assert module.classify(completed)[2] == ["x: not found; project JSON: Could not resolve host"]
