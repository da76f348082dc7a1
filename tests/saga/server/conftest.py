"""Markers of the server's tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "load: builds a large index and measures the server under a dashboard's "
        "load (a minute or two; deselect with -m 'not load')")
