"""The HTTP API against its own OpenAPI document, fuzzed by schemathesis (property-based:
valid and invalid requests generated from /openapi.json): no 5xx, and every response has
a status code, content type and body the document declares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from saga.config import Settings
from saga.engine.inputs import StartSaga
from tests.saga.server.test_api import ready
from tests.system import order, running_stack, wait_terminal

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_schema_conformance,negative_data_rejection,unsupported_method")


def test_schemathesis_finds_no_server_error_and_no_schema_breach(settings: Settings,
                                                                  tmp_path: Path) -> None:
    with running_stack(settings) as stack:
        stack.start(stack.add_server("fuzz").name)
        for saga_id in ("f-1", "f-2"):  # something for the reads to find
            stack.send(saga_id, StartSaga("order", {**order(saga_id), "pick_timeout_s": 1}))
        stack.flush()
        wait_terminal(stack, ["f-1", "f-2"])
        url = ready(stack, "server-fuzz")
        run = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "run", f"{url}/openapi.json",
             "--checks", CHECKS, "--max-examples", "40", "--workers", "1",
             "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all",
             "--exclude-path", "/readyz",  # 503 while catching up is its contract
             "--report-dir", str(tmp_path / "report")],
            capture_output=True, text=True, timeout=900, check=False)
        assert stack.dead() == [], "\n".join(stack.dead())
    print(run.stdout[-3000:])
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
