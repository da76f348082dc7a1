"""The layers the tree promises: a pure engine, production code that never imports the
dev tooling, every exception in saga/errors.py, and a package list that matches it."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import saga

ROOT = Path(__file__).resolve().parents[2]


def _modules_loaded_by(imports: list[str]) -> set[str]:
    code = ("import sys\n" + "".join(f"import {m}\n" for m in imports)
            + "print('\\n'.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd="/")
    return set(out.stdout.split())


def _saga_modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [package, *(m.name for m in pkgutil.walk_packages(root.__path__, f"{package}."))]


def test_the_engine_knows_nothing_of_kafka_rocksdb_or_avro() -> None:
    loaded = _modules_loaded_by(_saga_modules("saga.engine"))
    edges = {"confluent_kafka", "aiokafka", "rocksdict", "fastavro", "saga.kafka",
             "saga.store", "saga.codec", "saga.coordinator", "saga.cli"}
    assert not {m for m in loaded if m.split(".")[0] in edges or
                any(m == e or m.startswith(e + ".") for e in edges)}


def test_production_paths_never_import_the_dev_tooling() -> None:
    production = ["saga", "saga.cli.main", "saga.service", "saga.service.runner",
                  *_saga_modules("saga.coordinator"), *_saga_modules("saga.kafka"),
                  *_saga_modules("saga.store")]
    loaded = _modules_loaded_by(production)
    assert not {m for m in loaded if m.startswith(("saga.dev", "saga.testing", "testcontainers",
                                                   "pytest", "_pytest"))}


def test_the_cli_loads_the_client_only_for_the_commands_that_use_it() -> None:
    """httpx and the client's backends are half a second of imports: `saga rebuild`,
    `saga checksum`, `saga kafka start` and a rebuild's worker processes never use them."""
    loaded = _modules_loaded_by(["saga.cli.main"])
    assert not {m for m in loaded if m.startswith(("saga.client", "httpx"))}


def test_the_test_tooling_runs_no_process_and_its_plugin_costs_nothing() -> None:
    """saga.testing drives the engine and the services' code in memory: it loads none of
    the processes (coordinator, server, client) nor the dev tooling. Its pytest plugin,
    loaded by every pytest run of a project that installed kafka-saga, loads nothing of
    it until a test asks for a fixture."""
    loaded = _modules_loaded_by(_saga_modules("saga.testing"))
    assert not {m for m in loaded if m.startswith((
        "saga.coordinator", "saga.server", "saga.client", "saga.dev", "saga.store.projection",
        "saga.store.timer_index", "testcontainers"))}
    plugin = _modules_loaded_by(["saga.testing.plugin"])
    assert not {m for m in plugin if m.startswith(("saga.testing.env", "saga.service",
                                                   "saga.kafka", "saga.store"))}


def test_every_exception_lives_in_saga_errors() -> None:
    # Divergence, ContinueAsNew and BudgetExceeded are control-flow signals inside a
    # workflow's coroutine (BaseExceptions, so a workflow's `except Exception` cannot
    # swallow them), not errors anyone catches.
    allowed = {"saga.engine.context.Divergence", "saga.engine.context.ContinueAsNew",
               "saga.engine.budget.BudgetExceeded"}
    strays = []
    for name in _saga_modules("saga"):
        if name.startswith("saga.examples"):
            continue
        module = importlib.import_module(name)
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseException) \
                    and value.__module__ == name and name != "saga.errors":
                qualified = f"{name}.{value.__name__}"
                if qualified not in allowed:
                    strays.append(qualified)
    assert strays == []


def test_the_package_list_matches_the_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = set(config["package-dir"])
    in_tree = {"saga"} | {"saga." + ".".join(p.parent.relative_to(ROOT / "saga").parts)
                          for p in (ROOT / "saga").rglob("__init__.py")
                          if p.parent != ROOT / "saga"}
    assert listed == in_tree | mapped
    for package, folder in config["package-dir"].items():
        assert (ROOT / folder / "__init__.py").exists(), package
    assert saga.__file__ is not None
