"""The files of a secured development stack (compose/docker-compose.secure.yml), each
container given only its own: `saga kafka secrets`.

The folder holds the material once (the CA and its key, the broker's keystore, the
admin's certificate, a password per role's user, the origin key and each service's
reply key), and ``containers/<name>/`` holds copies of exactly what container ``name``
needs, which is all that container mounts:

    broker/                  ca.pem, broker.keystore.pem
    admin/                   ca.pem, admin.cert.pem, admin.key.pem, users/<every user>.password
    coordinator/             ca.pem, users/coordinator.password, origin.key
    server/                  ca.pem, users/server.password
    service-<name>/          ca.pem, users/service-<name>.password, reply.key
    client/                  ca.pem, users/client.password

Every file is its owner's only (0600, folders 0700): a container running as another
user than the one that wrote them (the official Kafka image runs its broker as uid
1000) is given its folder with ``broker_uid``. Dev tooling: a real installation brings
its own PKI and secret store.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from saga.codec.origin import encoded_service_key, new_origin_key
from saga.dev.certificates import CertificateFiles, issue_certificates, write_private
from saga.dev.embedded import ADMIN_USER as ADMIN

CONTAINERS = "containers"
ORIGIN_KEY = "origin.key"
REPLY_KEY = "reply.key"


@dataclass(frozen=True)
class DevSecrets:
    folder: Path
    certificates: CertificateFiles
    new_passwords: list[str]

    def password(self, user: str) -> Path:
        return _password(self.folder, user)

    @property
    def containers(self) -> Path:
        """Each container's own folder is below this one, named after the container."""
        return self.folder / CONTAINERS


def _password(folder: Path, user: str) -> Path:
    return folder / "users" / f"{user}.password"


def write_dev_secrets(folder: Path, users: list[str], services: list[str], *,
                      broker_uid: int | None = None) -> DevSecrets:
    """Make what is missing (a restarted stack keeps its PKI, passwords and keys), then
    lay out every container's own folder afresh."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    certificates = issue_certificates(folder, clients=[ADMIN])
    made = []
    for user in users:
        if _write_once(_password(folder, user), lambda: secrets.token_urlsafe(24)):
            made.append(user)
    origin = folder / ORIGIN_KEY
    _write_once(origin, new_origin_key)
    written = DevSecrets(folder, certificates, made)
    _lay_out(written, users, services, origin.read_text(), broker_uid)
    return written


def _write_once(path: Path, value: Callable[[], str]) -> bool:
    """Create ``path`` 0600 from its first byte with ``value()``; False if it exists."""
    _folder(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write(value())
    return True


def _lay_out(written: DevSecrets, users: list[str], services: list[str], origin: str,
             broker_uid: int | None) -> None:
    certs, root = written.certificates, written.containers
    _folder(root)
    plan: dict[str, list[tuple[str, Path | str]]] = {
        "broker": [("broker.keystore.pem", certs.broker_keystore)],
        ADMIN: [("admin.cert.pem", certs.client_cert(ADMIN)),
                ("admin.key.pem", certs.client_key(ADMIN)),
                *((f"users/{u}.password", written.password(u)) for u in users)],
        "coordinator": [("users/coordinator.password", written.password("coordinator")),
                        (ORIGIN_KEY, origin)],
        "server": [("users/server.password", written.password("server"))],
        "client": [("users/client.password", written.password("client"))],
        **{f"service-{name}": [(f"users/service-{name}.password",
                                written.password(f"service-{name}")),
                               (REPLY_KEY, encoded_service_key(origin, name))]
           for name in services},
    }
    for container, files in plan.items():
        target = _folder(root / container)
        for name, source in [("ca.pem", certs.ca), *files]:
            path = target / name
            _folder(path.parent)
            data = source.read_bytes() if isinstance(source, Path) else source.encode()
            # Replaced, never the folder: a container may already have it mounted (a
            # bind mount holds the folder itself, so a new one would stay unseen).
            fresh = path.with_name(f".{path.name}.new")
            write_private(fresh, data)
            os.replace(fresh, path)
    if broker_uid is not None:
        for path in [root / "broker", *(root / "broker").rglob("*")]:
            os.chown(path, broker_uid, -1)


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path
