"""`saga kafka secrets`: the files of a secured development cluster, kept across runs;
`saga acl user` reads its password from a file and says so when it cannot."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from cryptography import x509

from saga.config import Settings
from saga.dev.embedded import users
from tests.cli_helpers import run_saga


def test_secrets_are_written_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    folder = tmp_path / "secrets"
    first = run_saga(settings, "kafka", "secrets", "--dir", str(folder), "--json")
    assert first.returncode == 0, first.stderr
    made = json.loads(first.stdout)
    assert sorted(made["new_passwords"]) == sorted(users())
    ca = x509.load_pem_x509_certificate(Path(made["ca"]).read_bytes())
    admin = x509.load_pem_x509_certificate(Path(made["admin_cert"]).read_bytes())
    assert admin.issuer == ca.subject
    keystore = Path(made["broker_keystore"]).read_text()
    assert "PRIVATE KEY" in keystore
    assert keystore.count("CERTIFICATE") >= 4  # broker + CA, BEGIN and END
    passwords = {u: Path(p).read_text() for u, p in made["passwords"].items()}
    assert len(set(passwords.values())) == len(passwords)
    assert all(len(p) >= 24 for p in passwords.values())
    assert stat.S_IMODE(Path(made["passwords"]["client"]).stat().st_mode) == 0o600
    # Nothing printed holds a password.
    assert not any(p in first.stdout + first.stderr for p in passwords.values())

    again = run_saga(settings, "kafka", "secrets", "--dir", str(folder), "--readable",
                     "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new_passwords"] == []
    assert {u: Path(p).read_text() for u, p in made["passwords"].items()} == passwords
    assert stat.S_IMODE(Path(made["passwords"]["client"]).stat().st_mode) == 0o644


def test_acl_user_without_a_readable_password_file_says_what_to_do(tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1", state_dir=tmp_path)
    result = run_saga(settings, "acl", "user", "client", "--password-file",
                      str(tmp_path / "absent"), timeout=60)
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "password" in result.stderr
