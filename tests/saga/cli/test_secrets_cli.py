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

    again = run_saga(settings, "kafka", "secrets", "--dir", str(folder), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["new_passwords"] == []
    assert {u: Path(p).read_text() for u, p in made["passwords"].items()} == passwords
    # Every folder and every secret is its owner's only (certificates are public).
    for path in [folder, *folder.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        if path.is_dir():
            assert mode == 0o700, path
        elif path.name.endswith((".password", ".key", "key.pem", "keystore.pem")):
            assert mode == 0o600, path


def test_each_container_is_given_only_its_own_credential(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    made = run_saga(Settings(state_dir=tmp_path / "state"), "kafka", "secrets", "--dir",
                    str(folder), "--json")
    assert made.returncode == 0, made.stderr
    containers = folder / "containers"

    def holds(name: str) -> set[str]:
        return {str(p.relative_to(containers / name)) for p in (containers / name).rglob("*")
                if p.is_file()}

    assert holds("broker") == {"ca.pem", "broker.keystore.pem"}
    assert holds("coordinator") == {"ca.pem", "users/coordinator.password", "origin.key"}
    assert holds("server") == {"ca.pem", "users/server.password"}
    assert holds("client") == {"ca.pem", "users/client.password"}
    assert holds("service-payments") == {"ca.pem", "users/service-payments.password",
                                         "reply.key"}
    # Only the admin (which creates every user) holds every password, and no container
    # the CA's key.
    assert {p for p in holds("admin") if p.startswith("users/")} == {
        f"users/{u}.password" for u in users()}
    assert not [p for p in containers.rglob("ca.key.pem")]
    # A service's reply key is its own, derived from the origin key the coordinator holds.
    from saga.codec.origin import encoded_service_key
    origin = (containers / "coordinator" / "origin.key").read_text()
    assert (containers / "service-payments" / "reply.key").read_text() == \
        encoded_service_key(origin, "payments")
    assert (containers / "service-inventory" / "reply.key").read_text() != \
        (containers / "service-payments" / "reply.key").read_text()
    assert (containers / "client" / "users" / "client.password").read_text() == \
        (folder / "users" / "client.password").read_text()


def test_acl_user_without_a_readable_password_file_says_what_to_do(tmp_path: Path) -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1", state_dir=tmp_path)
    result = run_saga(settings, "acl", "user", "client", "--password-file",
                      str(tmp_path / "absent"), timeout=60)
    assert result.returncode == 2
    assert "cannot read" in result.stderr
    assert "password" in result.stderr
