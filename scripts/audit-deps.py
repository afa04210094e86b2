#!/usr/bin/env python3
"""`make audit`: pip-audit over the pinned constraints.txt; fails on a known vulnerability that has a fixed
version, and on any package the vulnerability service could not look up (an audit that saw nothing is not
a pass). Vulnerabilities without a fix are listed but do not fail."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def main() -> int:
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")]
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirements:
        requirements.write("\n".join(pins) + "\n")
        requirements.flush()
        result = subprocess.run([str(ROOT / ".venv/bin/pip-audit"), "-r", requirements.name, "--no-deps",
                                 "--disable-pip", "--progress-spinner", "off", "--format", "json",
                                 *sys.argv[1:]], capture_output=True, text=True)
    try:
        report = json.loads(result.stdout)
    except json.JSONDecodeError:
        print(f"pip-audit failed (exit {result.returncode}):\n{result.stderr}", file=sys.stderr)
        return 2
    fixable, unfixed, unaudited = classify(report)
    for title, items in (("vulnerable, fix available (bump the pin in constraints.txt)", fixable),
                         ("vulnerable, no fix yet", unfixed), ("could not be audited", unaudited)):
        if items:
            print(f"{title}:\n  " + "\n  ".join(items))
    print(f"audited {len(report['dependencies']) - len(unaudited)} of {len(report['dependencies'])} pinned packages")
    return 1 if fixable or unaudited else 0


if __name__ == "__main__":
    sys.exit(main())
