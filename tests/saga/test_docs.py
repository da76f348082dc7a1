"""The documentation tells the truth about what it lists: every setting, every command."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from saga.cli.main import build_parser
from saga.config import Settings

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_setting_is_in_the_configuration_page() -> None:
    page = (DOCS / "configuration.md").read_text()
    missing = [f.name for f in fields(Settings) if f"`SAGA_{f.name.upper()}`" not in page]
    assert missing == []


def test_every_command_is_in_the_cli_page() -> None:
    page = (DOCS / "cli.md").read_text()
    commands: dict[str, object] = {}
    for action in build_parser()._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            commands.update(choices)
    missing = [name for name in commands if f"saga {name}" not in page]
    assert missing == []
