"""`make audit` fails on a vulnerability with a fix and on an unaudited package, not on an unfixed one."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "audit-deps.py"


def load_classify():  # the script is not a package: loaded by path
    spec = importlib.util.spec_from_file_location("audit_deps", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.classify


def test_vulnerabilities_are_split_by_whether_a_fix_exists() -> None:
    report = {"dependencies": [
        {"name": "jinja2", "version": "2.10", "vulns": [{"id": "GHSA-1", "fix_versions": ["2.10.1"]}]},
        {"name": "foo", "version": "1.0", "vulns": [{"id": "PYSEC-2", "fix_versions": []}]},
        {"name": "bar", "version": "2.0", "skip_reason": "Dependency not found on PyPI"},
        {"name": "clean", "version": "3.0", "vulns": []},
    ]}
    fixable, unfixed, unaudited = load_classify()(report)
    assert fixable == ["jinja2==2.10 GHSA-1 fixed in 2.10.1"]
    assert unfixed == ["foo==1.0 PYSEC-2 fixed in -"]
    assert unaudited == ["bar: Dependency not found on PyPI"]
