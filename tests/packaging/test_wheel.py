"""The built wheel works on its own: installed into a fresh venv, away from the checkout,
its `saga` creates the topics, runs a coordinator with the example workflows and reads a
saga back, against the session's Kafka."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest

from saga.config import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `saga` of a fresh venv holding only the built wheel and its dependencies."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(where / "dist"), str(ROOT)], check=True, timeout=600)
    [wheel] = list((where / "dist").glob("kafka_saga-*.whl"))
    venv.create(where / "venv", with_pip=True)
    python = where / "venv" / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], check=True,
                   timeout=600)
    return where / "venv" / "bin" / "saga"


def test_the_wheel_runs_a_saga_against_kafka(installed: Path, settings: Settings,
                                             tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "SAGA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
           "SAGA_TOPIC_PREFIX": settings.topic_prefix, "SAGA_STATE_DIR": str(tmp_path / "s"),
           "SAGA_PARTITIONS": str(settings.partitions)}

    def saga(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(installed), *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, check=False)

    # the console's static files and the long-lived examples are in the wheel
    python = installed.parent / "python"
    shipped = subprocess.run([str(python), "-c", "import importlib.resources as r; "
                              "import saga.examples.subscription, saga.examples.bulk_order; "
                              "c = r.files('saga.server') / 'console'; "
                              "print(sorted(p.name for p in c.iterdir()))"],
                             env=env, cwd=tmp_path, capture_output=True, text=True,
                             timeout=60, check=False)
    assert shipped.returncode == 0, shipped.stderr
    assert {"index.html", "app.js", "style.css", "vendor"} <= set(json.loads(
        shipped.stdout.replace("'", '"')))
    assert saga("topics", "create").returncode == 0
    check = saga("topics", "check", "--json")
    assert check.returncode == 0, check.stdout + check.stderr
    order = {"id": "w-1", "customer": "c", "amount_cents": 100,
             "items": [{"sku": "x", "qty": 1}]}
    assert saga("start", "order", "--id", "w-1", "--input", json.dumps(order)).returncode == 0
    with (tmp_path / "coordinator.log").open("wb") as log:
        coordinator = subprocess.Popen([str(installed), "coordinator", "run", "--instance-id",
                                        "w"], env=env, cwd=tmp_path, stdout=log,
                                       stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        status = saga("status", "w-1", "--json")
        while status.returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
            status = saga("status", "w-1", "--json")
    finally:
        coordinator.terminate()
        coordinator.wait(30)
    assert status.returncode == 0, status.stderr + (tmp_path / "coordinator.log").read_text()
    summary = json.loads(status.stdout)
    # The example order workflow ran from the wheel: it charged first and now waits.
    assert summary["type"] == "order"
    assert summary["status"] == "RUNNING"
    assert summary["in_flight"] == 1
