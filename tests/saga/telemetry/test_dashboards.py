"""compose's Prometheus and Grafana files can only drift silently: every metric the
dashboard queries is one kafka-saga exports, and Prometheus scrapes every process the
compose file gives a metrics port."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import REGISTRY

import saga.telemetry.metrics  # noqa: F401 - registers every family

COMPOSE = Path(__file__).resolve().parents[3] / "compose"


def exported() -> set[str]:
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("saga_"):
            names.add(family.name)
            names.update(f"{family.name}{suffix}" for suffix in
                         ("_total", "_bucket", "_count", "_sum", "_created"))
    return names


def test_the_dashboard_queries_only_exported_metrics() -> None:
    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "kafka-saga.json").read_text())
    queried = {name for panel in dashboard["panels"] for target in panel["targets"]
               for name in re.findall(r"\bsaga_[a-z_]+", target["expr"])}
    assert queried - exported() == set()
    assert len(dashboard["panels"]) >= 12


def test_prometheus_scrapes_every_metrics_port_of_the_compose_file() -> None:
    compose = (COMPOSE / "docker-compose.yml").read_text()
    ports = set(re.findall(r'"--metrics-port", "(\d+)"', compose))
    server = re.search(r"SAGA_SERVER_PORT:-(\d+)", compose)
    assert server is not None
    scraped = set(re.findall(r"127\.0\.0\.1:(\d+)", (COMPOSE / "prometheus.yml").read_text()))
    assert ports | {server.group(1)} == scraped
    assert len(ports) == 7  # two coordinators, five services
