"""The README's quickstart as a newcomer runs it: its files, written into a project
folder outside the repository, tested by a plain `pytest` that finds saga.testing's
plugin through the installed package's entry point alone (no conftest, no
pytest-asyncio), in under a second; and docs/testing.md's examples, the same way.
(The wheel itself and pip are exercised by hand and by tests/packaging/test_wheel.py:
these tests have no network.)"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def quickstart_files() -> dict[str, str]:
    """The README's quickstart files: its Python blocks, each headed ``# <name>.py``."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    files = {}
    for block in blocks:
        name = re.match(r"# (\w+\.py)\n", block)
        assert name is not None, block[:80]
        files[name[1]] = block
    return files


def docs_examples() -> str:
    """docs/testing.md's examples, "A workflow" to "A versioned change": one module."""
    page = (ROOT / "docs" / "testing.md").read_text()
    part = page.split("\n## A workflow\n", 1)[1].split("\n### Recorded histories\n", 1)[0]
    return "\n\n".join(re.findall(r"```python\n(.*?)```", part, flags=re.S))


def run_project(project: Path, files: dict[str, str]) -> tuple[int, float, str]:
    """pytest in ``project`` holding ``files``, as a user runs it: (passed, seconds,
    output)."""
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(text)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "--durations=0"], cwd=project, capture_output=True, text=True,
                         timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = re.search(r"(\d+) passed in ([\d.]+)s", run.stdout)
    assert summary is not None, run.stdout
    print(f"\n{project.name}: {summary[0]}")
    return int(summary[1]), float(summary[2]), run.stdout


def test_the_quickstart_project_tests_itself_in_under_a_second(tmp_path: Path) -> None:
    files = quickstart_files()
    assert sorted(files) == ["checkout.py", "services.py", "test_checkout.py"]
    passed, took, output = run_project(tmp_path / "shop", files)
    assert passed == 5
    assert took < 1.0, output


def test_the_testing_pages_examples_pass(tmp_path: Path) -> None:
    module = docs_examples()
    assert module.startswith("# test_orders.py\n")
    passed, _, _ = run_project(tmp_path / "orders", {"test_orders.py": module})
    assert passed == module.count("\nasync def test_")
