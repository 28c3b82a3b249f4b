"""deploy/grafana/mmpp.json and deploy/prometheus/alerts.yml ask only for metrics the code exports.

A renamed metric would leave a dashboard panel empty and an alert silent, with nothing to say so: here
every `mmpp_*` name a query uses is looked up in what the metric objects declare (a bot's queue, its
own metrics, a worker's drawing metrics); tests/bot/test_health.py does the same against the pages a
started bot and a real `mmpp worker` serve.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from tests.need import need

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "mmpp.json"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
# The names a family of each type puts on a scraped page (`_created` left out: nobody queries it).
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum"),
             "summary": ("", "_count", "_sum"), "info": ("_info",), "unknown": ("",)}
_NAME = re.compile(r"\bmmpp_[a-zA-Z0-9_]+")


def dashboard_queries() -> list[str]:
    return [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel.get("targets", [])]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def queried_names() -> set[str]:
    return {name for query in dashboard_queries() + [r["expr"] for r in alert_rules()]
            for name in _NAME.findall(query)}


def registry_names(registry: CollectorRegistry) -> set[str]:
    """Every series name `registry` can put on a page, samples or not (a CUDA-only gauge on a CPU)."""
    return {f.name + suffix for f in registry.collect() for suffix in _SUFFIXES.get(f.type, ("",))}


def page_names(page: str) -> set[str]:
    """The same, read from a scraped page's `# TYPE` lines (where a counter is already named `..._total`)."""
    return {name.removesuffix("_total") + suffix if kind == "counter" else name + suffix
            for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", page, re.MULTILINE)
            for suffix in _SUFFIXES.get(kind, ("",))}


def test_a_scraped_page_names_the_same_series_as_its_registry() -> None:
    from prometheus_client import Counter, Gauge, Histogram, generate_latest

    registry = CollectorRegistry()
    Counter("mmpp_a", "a", registry=registry)
    Gauge("mmpp_b", "b", ["device"], registry=registry)  # no sample: declared only
    Histogram("mmpp_c", "c", registry=registry)
    names = registry_names(registry)
    assert names == {"mmpp_a_total", "mmpp_b", "mmpp_c_bucket", "mmpp_c_count", "mmpp_c_sum"}
    assert names <= page_names(generate_latest(registry).decode())


def declared_names() -> set[str]:
    """What the metric objects declare: a bot's queue (with its engines' drawing metrics) and its own
    metrics in the queue's registry, and a worker's drawing metrics in its own."""
    from mmpp.bot.metrics import BotMetrics
    from mmpp.inference.queue import DrawMetrics, GenerationQueue
    from mmpp.inference.styles import StyleCatalog
    from mmpp.settings import load_settings

    queue = GenerationQueue(None, load_settings(None), catalog=StyleCatalog.load(Path("no-styles"), builtin=True))
    BotMetrics(queue)
    return registry_names(queue.metrics.registry) | registry_names(DrawMetrics().registry)


def test_every_metric_a_panel_or_an_alert_asks_for_is_exported() -> None:
    declared = declared_names()
    asked = queried_names()
    assert len(asked) >= 15  # the parsing found the queries at all
    assert sorted(asked - declared) == []


def test_the_check_catches_a_name_nobody_exports() -> None:
    # The same lookup, given a query with a typo, names it: the test above can fail.
    assert _NAME.findall("rate(mmpp_bot_outcome_total[5m])") == ["mmpp_bot_outcome_total"]
    assert "mmpp_bot_outcome_total" not in declared_names()


def test_the_alerts_cover_what_an_operator_is_woken_for() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert {"MMPPNoWorker", "MMPPQueueStuck", "MMPPSlowAcknowledgement", "MMPPHighErrorRate"} <= set(rules)
    assert "mmpp_queue_workers" in rules["MMPPNoWorker"]["expr"]
    assert "mmpp_queue_depth" in rules["MMPPQueueStuck"]["expr"]
    slow = rules["MMPPSlowAcknowledgement"]["expr"]
    assert "histogram_quantile(0.95" in slow and "mmpp_bot_ack_seconds_bucket" in slow and slow.strip().endswith("> 1")
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name


def test_the_dashboard_is_one_grafana_can_import() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "mmpp" and dashboard["title"] == "MMPP"
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"h", "w", "x", "y"} and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_promtool_accepts_the_rules_and_every_panel_query(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        # CI installs Debian's prometheus package and sets MMPP_REQUIRE_PROMTOOL=1: there a missing
        # promtool is a failure, not a quiet skip of the only check Prometheus itself makes.
        need("promtool is not installed (Debian's prometheus package)", "MMPP_REQUIRE_PROMTOOL")
    done = subprocess.run(["promtool", "check", "rules", str(ALERTS)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    panels = tmp_path / "panels.yml"
    rules = [{"record": f"mmpp:panel_{i}", "expr": query} for i, query in enumerate(dashboard_queries())]
    panels.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    done = subprocess.run(["promtool", "check", "rules", str(panels)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
