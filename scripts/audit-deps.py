#!/usr/bin/env python3
"""`make audit`: pip-audit over the pinned constraints.txt; fails on a known vulnerability that has a fixed
version, and on any package the vulnerability service could not look up (an audit that saw nothing is not
a pass). Vulnerabilities without a fix are listed but do not fail.

Where pip-audit's per-version lookup (``https://pypi.org/pypi/<name>/<version>/json``) is not served, a
package is looked up in its project JSON (``https://pypi.org/pypi/<name>/json``) instead: its
``vulnerabilities`` are those of the latest release only, so they answer for a pin that is the latest
release; an older pin stays unaudited (it fails, naming the latest release).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROJECT_JSON = "https://pypi.org/pypi/{name}/json"


def fetch_project(name: str) -> dict:
    """PyPI's project JSON (its latest release, with that release's known vulnerabilities)."""
    with urllib.request.urlopen(PROJECT_JSON.format(name=name), timeout=30) as response:
        return json.loads(response.read())


def from_project_json(dep: dict, version: str, fetch: Callable[[str], dict] = fetch_project) -> dict:
    """A dependency pip-audit skipped (pinned at ``version``), audited from its project JSON when the pin is
    the latest release; otherwise still skipped, saying why."""
    dep = {**dep, "version": version}
    try:
        project = fetch(dep["name"])
    except (urllib.error.URLError, OSError, ValueError) as error:
        return {**dep, "skip_reason": f"{dep['skip_reason']}; project JSON: {error}"}
    latest = project["info"]["version"]
    if latest != dep["version"]:
        return {**dep, "skip_reason": f"{dep['skip_reason']}; its project JSON covers only the latest release "
                                      f"{latest} (update the pin or audit where per-version lookups work)"}
    vulns = [{"id": vuln["id"], "fix_versions": vuln.get("fixed_in") or []}
             for vuln in project.get("vulnerabilities", []) if not vuln.get("withdrawn")]
    return {"name": dep["name"], "version": dep["version"], "vulns": vulns}


def canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def complete(report: dict, pins: dict[str, str], fetch: Callable[[str], dict] = fetch_project) -> dict:
    """pip-audit's report with every skipped dependency retried through its project JSON (``pins``:
    canonical name -> pinned version)."""
    return {**report, "dependencies": [
        from_project_json(dep, pins[canonical(dep["name"])], fetch) if "skip_reason" in dep else dep
        for dep in report["dependencies"]]}


def classify(report: dict) -> tuple[list[str], list[str], list[str]]:
    """pip-audit's JSON report as (vulnerable with a fix, vulnerable without one, not audited) lines."""
    fixable, unfixed, unaudited = [], [], []
    for dep in report["dependencies"]:
        if "skip_reason" in dep:
            unaudited.append(f"{dep['name']}: {dep['skip_reason']}")
        for vuln in dep.get("vulns", []):
            line = f"{dep['name']}=={dep['version']} {vuln['id']} fixed in {', '.join(vuln['fix_versions']) or '-'}"
            (fixable if vuln["fix_versions"] else unfixed).append(line)
    return fixable, unfixed, unaudited


def main(argv: list[str]) -> int:
    """``--warn-unaudited`` (`make test`): packages that could not be looked up are listed without failing,
    as long as some were; the rest of ``argv`` goes to pip-audit."""
    warn_unaudited = "--warn-unaudited" in argv
    argv = [arg for arg in argv if arg != "--warn-unaudited"]
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(pins) + "\n")
        requirements.flush()
        result = subprocess.run([str(ROOT / ".venv/bin/pip-audit"), "-r", requirements.name, "--no-deps",
                                 "--disable-pip", "--progress-spinner", "off", "--format", "json",
                                 *argv], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit failed (exit {result.returncode}):\n{result.stderr}", file=sys.stderr)
        return 2
    fixable, unfixed, unaudited = classify(complete(report, {
        canonical(name): version for name, version in (pin.split(";")[0].strip().split("==") for pin in pins)}))
    for title, items in (("vulnerable, fix available (bump the pin in constraints.txt)", fixable),
                         ("vulnerable, no fix yet", unfixed), ("could not be audited", unaudited)):
        if items:
            print(f"{title}:\n  " + "\n  ".join(items))
    audited = len(report["dependencies"]) - len(unaudited)
    print(f"audited {audited} of {len(report['dependencies'])} pinned packages")
    return 1 if fixable or (unaudited and not (warn_unaudited and audited)) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
