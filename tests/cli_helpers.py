"""Run the real `saga` command line in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys

from saga.config import Settings


def saga_env(settings: Settings) -> dict[str, str]:
    return {**os.environ,
            "SAGA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "SAGA_TOPIC_PREFIX": settings.topic_prefix,
            "SAGA_STATE_DIR": str(settings.state_dir),
            "SAGA_PARTITIONS": str(settings.partitions),
            **settings.child_env()}


def run_saga(settings: Settings, *args: str, timeout: float = 120
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "saga.cli.main", *args],
                          env=saga_env(settings), capture_output=True, text=True,
                          timeout=timeout, check=False)
