"""SQL targets for Grafana's PostgreSQL datasource, and the expansion Grafana applies before running them.

grafana-foundation-sdk has no query type for SQL datasources, so ``SqlQuery`` is one: it emits the
fields Grafana's PostgreSQL query editor saves in code mode (``rawSql``, ``format``, ``rawQuery``,
``editorMode``, the datasource reference).

``expand`` does what Grafana does to such a query before PostgreSQL sees it, so that tests and
benchmarks run exactly what a panel runs. Grafana's documentation ("PostgreSQL query editor",
section "Macros"; "Variables" / "Global variables") defines:

* template variables are replaced first: ``$__interval`` / ``${__interval}`` by the panel's interval
  (``1m``), ``$__interval_ms`` by it in milliseconds, ``$name`` / ``${name}`` by a dashboard
  variable's value (a single-value variable without "All" is inserted as it is, unquoted);
* then the datasource's macros: ``$__timeFilter(col)`` -> ``col BETWEEN '<from>' AND '<to>'``
  (RFC 3339, UTC), ``$__timeFrom()`` / ``$__timeTo()`` -> ``'<from>'`` / ``'<to>'``,
  ``$__timeGroup(col, 5m)`` -> ``floor(extract(epoch from col)/300)*300`` and
  ``$__timeGroupAlias(col, 5m)`` -> the same ``AS "time"`` (epoch seconds, which Grafana reads
  as the time column).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models.common import DataSourceRef

Format = Literal["time_series", "table"]


class SqlQuery(cogvariants.Dataquery):
    """One SQL target of a panel, as Grafana stores it."""

    def __init__(self, sql: str, datasource: DataSourceRef, fmt: Format = "table", ref_id: str = "A") -> None:
        self.sql = sql
        self.datasource = datasource
        self.format = fmt
        self.ref_id = ref_id

    def to_json(self) -> dict[str, object]:
        return {"datasource": self.datasource.to_json(), "editorMode": "code", "format": self.format,
                "rawQuery": True, "rawSql": self.sql, "refId": self.ref_id}


@dataclass(frozen=True)
class Sql(cogbuilder.Builder[SqlQuery]):
    """Builder form of SqlQuery, for ``panel.with_target(...)``."""

    sql: str
    datasource: DataSourceRef
    format: Format = "table"
    ref_id: str = "A"

    def build(self) -> SqlQuery:
        return SqlQuery(self.sql, self.datasource, self.format, self.ref_id)


_UNITS_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^'?(\d+)(ms|s|m|h|d|w)'?$")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def interval_seconds(text: str) -> float:
    """Seconds of a Grafana duration such as ``5m`` or ``'30s'``."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"not a Grafana interval: {text!r} (expected e.g. 30s, 5m, 1h)")
    return int(match[1]) * _UNITS_S[match[2]]


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _macro_arguments(sql: str, start: int) -> tuple[list[str], int]:
    """The comma-separated arguments of the macro call whose '(' is at ``start`` (nested parentheses
    allowed), and the position after its ')'."""
    depth, arguments, current = 0, [], start + 1
    for position in range(start, len(sql)):
        char = sql[position]
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                arguments.append(sql[current:position].strip())
                return [a for a in arguments if a], position + 1
        elif char == "," and depth == 1:
            arguments.append(sql[current:position].strip())
            current = position + 1
    raise ValueError(f"unbalanced parentheses after macro at {start}: {sql[start:start + 60]!r}")


def _group(arguments: list[str]) -> str:
    seconds = interval_seconds(arguments[1])
    return f"floor(extract(epoch from {arguments[0]})/{seconds:g})*{seconds:g}"


_MACROS = {
    "timeFilter": lambda a, f, t: f"{a[0]} BETWEEN '{f}' AND '{t}'",
    "timeFrom": lambda a, f, t: f"'{f}'",
    "timeTo": lambda a, f, t: f"'{t}'",
    "timeGroup": lambda a, f, t: _group(a),
    "timeGroupAlias": lambda a, f, t: _group(a) + ' AS "time"',
}
_MACRO = re.compile(r"\$__(" + "|".join(sorted(_MACROS, key=len, reverse=True)) + r")\(")


def expand(sql: str, start: datetime, end: datetime, interval: str = "1m",
           variables: Mapping[str, str] | None = None) -> str:
    """The SQL Grafana sends to PostgreSQL for a panel over [start, end] with the given interval and
    dashboard variable values. Unknown variables and macros are errors, not left in the text."""
    seconds = interval_seconds(interval)
    values = {"__interval": interval, "__interval_ms": str(int(seconds * 1000)), **(variables or {})}

    def variable(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name in values:
            return values[name]
        if name.startswith("__") and name[2:] in _MACROS:
            return match[0]
        raise KeyError(f"no value for Grafana variable ${name}")

    text = _VARIABLE.sub(variable, sql)
    begin, finish = _rfc3339(start), _rfc3339(end)
    while match := _MACRO.search(text):
        arguments, after = _macro_arguments(text, match.end() - 1)
        text = text[:match.start()] + _MACROS[match[1]](arguments, begin, finish) + text[after:]
    return text
