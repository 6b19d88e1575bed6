"""What a PromQL expression names: its metrics, the labels it matches on each, the labels it groups
by, and the values its matchers expect. Enough of PromQL for the expressions in deploy/ (selectors,
functions, aggregations with by/without, binary operators with on/ignoring, ranges, Grafana's
$__rate_interval); tested on known expressions in tests/test_dashboards.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Words that are PromQL syntax, not metric names (aggregations are followed by "by", not "(").
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan", "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk",
            "quantile", "count_values", "group"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_SELECTOR = re.compile(r"([A-Za-z_:][A-Za-z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_IDENTIFIER = re.compile(r"(?<![\w:.$])([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()")


@dataclass
class Names:
    metrics: set[str] = field(default_factory=set)
    matched: dict[str, set[str]] = field(default_factory=dict)  # metric -> label names in its matchers
    grouped: set[str] = field(default_factory=set)  # labels of by/without/on/ignoring/group_*
    expected: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # (metric, label) -> values


def names(expr: str) -> Names:
    found = Names()
    for metric, body in _SELECTOR.findall(expr):
        labels = found.matched.setdefault(metric, set())
        for label, op, quoted in _MATCHER.findall(body):
            labels.add(label)
            value = quoted[1:-1]
            if op == "=" or (op == "=~" and re.fullmatch(r"[\w:-]+(\|[\w:-]+)*", value)):
                found.expected.setdefault((metric, label), set()).update(value.split("|"))
    rest = _SELECTOR.sub(lambda m: f" {m.group(1) or ''} ", _STRING.sub('""', expr))
    rest = _RANGE.sub(" ", rest)
    for _word, labels in _GROUPING.findall(rest):
        found.grouped.update(label.strip() for label in labels.split(",") if label.strip())
    rest = _GROUPING.sub(" ", rest)
    found.metrics = {w for w in _IDENTIFIER.findall(rest) if w not in KEYWORDS}
    found.matched = {m: labels for m, labels in found.matched.items() if m}
    found.metrics |= set(found.matched)
    return found
