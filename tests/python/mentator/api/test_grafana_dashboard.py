"""``deploy/grafana/mentator.json``: every query names a metric the service exports, and the file is
a valid dashboard in Grafana's classic dashboard JSON model (its documented fields: ``uid`` of
8-40 characters, ``title``, ``schemaVersion``, ``time``, ``templating.list``, ``panels`` placed by
``gridPos`` on a 24-column grid, each query panel with a ``datasource`` and ``targets`` holding
``refId`` and ``expr``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from mentator.api.metrics import ApiMetrics

DASHBOARD = Path("deploy/grafana/mentator.json")
GRID_COLUMNS = 24
# Panel types of Grafana's core visualisations that this dashboard may use.
PANEL_TYPES = {"row", "timeseries", "stat", "gauge", "bargauge", "table", "heatmap", "text"}
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers left once strings, label
    matchers ``{...}``, ranges ``[...]``, grouping clauses ``by (...)``, template variables and
    function calls are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in PROMQL_WORDS:
            names.add(name)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, model) (rate(a_bucket{model=~"$model", x="b c"}'
        "[$__rate_interval]))) / on (model) group_left max(b_total offset 5m) > bool 1e3"
    )
    assert metric_names(expr) == {"a_bucket", "b_total"}


def load() -> dict[str, Any]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(dashboard, dict)
    return dashboard


def query_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in query_panels(dashboard) for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


def exprs_of_label_values(expr: str) -> str:
    """``label_values(metric, label)`` (a Grafana variable query) → ``metric``."""
    found = re.fullmatch(r"label_values\(\s*([^,]+?)\s*,\s*\w+\s*\)", expr)
    return found.group(1) if found else expr


def test_every_query_names_an_exported_metric() -> None:
    exported = ApiMetrics().exported_names()
    dashboard = load()
    seen: set[str] = set()
    for expr in queries(dashboard):
        names = metric_names(exprs_of_label_values(expr))
        assert names, f"no metric in {expr!r}"
        assert names <= exported, f"{sorted(names - exported)} of {expr!r} are not exported"
        seen |= names
    # The dashboard shows the inference metrics of issue 24, not only the first ones.
    for family in (
        "mentator_time_to_first_token_seconds_bucket",
        "mentator_time_per_output_token_seconds_bucket",
        "mentator_request_duration_seconds_bucket",
        "mentator_request_queue_wait_seconds_bucket",
        "mentator_generation_tokens_total",
        "mentator_requests_total",
        "mentator_engine_kv_cache_usage_ratio",
        "mentator_engine_restarts_total",
    ):
        assert family in seen, family


def test_exported_names_follow_the_exposition_suffixes() -> None:
    exported = ApiMetrics().exported_names()
    assert {"mentator_requests_total", "mentator_time_to_first_token_seconds_bucket"} <= exported
    assert {"mentator_time_to_first_token_seconds_sum", "mentator_queue_waiting"} <= exported
    assert "mentator_requests" not in exported
    assert "mentator_time_to_first_token_seconds" not in exported


def test_the_dashboard_model_is_valid() -> None:
    dashboard = load()
    assert isinstance(dashboard["title"], str) and dashboard["title"]
    assert isinstance(dashboard["uid"], str) and 8 <= len(dashboard["uid"]) <= 40
    assert dashboard.get("id") is None  # assigned by Grafana on import
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 36
    assert isinstance(dashboard["version"], int)
    assert set(dashboard["time"]) == {"from", "to"}
    assert isinstance(dashboard["annotations"]["list"], list)
    variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids)
    for panel in dashboard["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        assert isinstance(panel["title"], str) and panel["title"]
        check_grid_position(panel["gridPos"])
    assert not overlapping(dashboard["panels"])
    for panel in query_panels(dashboard):
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert isinstance(target["expr"], str) and target["expr"].strip()
            used = set(re.findall(r"\$\{?(\w+)\}?", target["expr"]))
            assert used <= set(variables) | GRAFANA_BUILTINS, used


def check_grid_position(position: dict[str, Any]) -> None:
    assert set(position) == {"x", "y", "w", "h"}
    assert all(isinstance(value, int) for value in position.values())
    assert position["h"] >= 1 and 1 <= position["w"] <= GRID_COLUMNS
    assert position["x"] >= 0 and position["y"] >= 0
    assert position["x"] + position["w"] <= GRID_COLUMNS


def overlapping(panels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    cells: dict[tuple[int, int], str] = {}
    clashes = []
    for panel in panels:
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                if (x, y) in cells:
                    clashes.append((cells[(x, y)], panel["title"]))
                cells[(x, y)] = panel["title"]
    return clashes


@pytest.mark.parametrize("bad", ["mentator_nope_total", "mentator_requests"])
def test_a_query_of_an_unknown_metric_is_caught(bad: str) -> None:
    exported = ApiMetrics().exported_names()
    assert not metric_names(f"sum(rate({bad}[5m]))") <= exported
