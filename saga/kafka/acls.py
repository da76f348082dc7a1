"""Least-privilege ACLs, one set per role: what each kind of kafka-saga process may do on
a cluster whose authorizer denies everything else (docs/security.md explains each line).

Topic names come with the configured prefix; consumer groups that only assign (the
readers of catch-up, audits and watchers) are named ``saga-<purpose>-<uuid>`` and are
allowed by prefix; transactional ids by the prefix each role's producers use."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from saga.config import Settings
from saga.errors import ConfigError
from saga.kafka.clients import as_saga_error

_R, _W, _D, _DC = (AclOperation.READ, AclOperation.WRITE, AclOperation.DESCRIBE,
                   AclOperation.DESCRIBE_CONFIGS)
_TIMEOUT_S = 30


class Role(Enum):
    COORDINATOR = "coordinator"
    SERVICE = "service"
    SERVER = "server"
    CLIENT = "client"


@dataclass(frozen=True)
class Grant:
    resource: ResourceType
    name: str
    pattern: ResourcePatternType
    operations: tuple[AclOperation, ...]

    def bindings(self, principal: str) -> list[AclBinding]:
        return [AclBinding(self.resource, self.name, self.pattern, principal, "*", op,
                           AclPermissionType.ALLOW) for op in self.operations]


def _topic(name: str, *ops: AclOperation) -> Grant:
    return Grant(ResourceType.TOPIC, name, ResourcePatternType.LITERAL, ops)


def _groups(*prefixes: str) -> list[Grant]:
    return [Grant(ResourceType.GROUP, p, ResourcePatternType.PREFIXED, (_R, _D))
            for p in prefixes]


def grants(settings: Settings, role: Role, services: Iterable[str],
           service: str | None = None) -> list[Grant]:
    """What ``role`` needs; ``services`` are every service's name (the coordinator writes
    their command topics), ``service`` the one a SERVICE principal runs."""
    t = settings.topic
    inbox, journal, timers = t("saga.inbox"), t("saga.journal"), t("saga.timers")
    dlq, schedules = t("saga.dlq"), t("saga.schedules")
    readers = _groups("saga-reader-", "saga-meta-", "saga-backlog-")
    if role is Role.COORDINATOR:
        return [
            # It writes the inbox too: fired timers, a child's start and end, inputs
            # re-routed to their saga's partition; and the schedule catalog.
            _topic(inbox, _R, _W, _D, _DC),
            _topic(journal, _R, _W, _D, _DC),
            _topic(timers, _R, _W, _D, _DC),
            _topic(schedules, _R, _W, _D, _DC),
            _topic(dlq, _W, _D, _DC),
            *(_topic(t(f"{name}.commands"), _W, _D, _DC) for name in sorted(services)),
            # It checks every topic of the specs at start-up, the changelogs too.
            *(_topic(t(f"{name}.state"), _D, _DC) for name in sorted(services)),
            Grant(ResourceType.GROUP, t("saga-coordinator"), ResourcePatternType.LITERAL,
                  (_R, _D)),
            *readers,
            Grant(ResourceType.TRANSACTIONAL_ID, t("saga-coordinator-"),
                  ResourcePatternType.PREFIXED, (_W, _D)),
        ]
    if role is Role.SERVICE:
        if not service:
            raise ConfigError("the service role needs the service's name",
                              hint="pass --service NAME (e.g. payments)")
        group = t(f"service-{service}")
        return [
            _topic(t(f"{service}.commands"), _R, _D, _DC),
            _topic(t(f"{service}.state"), _R, _W, _D, _DC),
            _topic(inbox, _W, _D),
            _topic(dlq, _W, _D),
            Grant(ResourceType.GROUP, group, ResourcePatternType.LITERAL, (_R, _D)),
            *readers,
            Grant(ResourceType.TRANSACTIONAL_ID, f"{group}-", ResourcePatternType.PREFIXED,
                  (_W, _D)),
        ]
    if role is Role.SERVER:
        return [
            _topic(journal, _R, _D, _DC),
            _topic(dlq, _R, _D, _DC),
            _topic(timers, _R, _D),
            _topic(schedules, _R, _W, _D),
            _topic(inbox, _W, _D),  # starts, signals and cancels for API callers
            *readers, *_groups("saga-server-"),
        ]
    # CLIENT: sends inputs; reads the journal and dlq to wait for results.
    return [
        _topic(inbox, _W, _D),
        _topic(journal, _R, _D),
        _topic(dlq, _R, _D),
        _topic(schedules, _R, _W, _D),
        *readers, *_groups("saga-client-"),
    ]


def apply(admin: AdminClient, principal: str, role_grants: list[Grant]) -> int:
    """Create the ACLs (idempotent: Kafka keeps one of each); how many bindings."""
    bindings = [b for g in role_grants for b in g.bindings(principal)]
    try:
        for future in admin.create_acls(bindings, request_timeout=_TIMEOUT_S).values():
            future.result()
    except KafkaException as exc:
        raise as_saga_error(exc) from exc
    return len(bindings)


#: SCRAM iterations of a credential set by `saga acl user` (Kafka's minimum is 4096).
SCRAM_ITERATIONS = 8192


def set_scram_credential(admin: AdminClient, user: str, password: str,
                         mechanism: str = "SCRAM-SHA-512") -> None:
    """Create or replace ``user``'s SCRAM credential: how a principal of a role gets
    its password on a cluster that was not formatted with it (KIP-554)."""
    if not password:
        raise ConfigError(f"the password of user {user!r} is empty",
                          hint="write the password into the file given to --password-file")
    which = ScramMechanism.SCRAM_SHA_512 if mechanism == "SCRAM-SHA-512" \
        else ScramMechanism.SCRAM_SHA_256
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(which, SCRAM_ITERATIONS),
                                          password.encode())
    try:
        for future in admin.alter_user_scram_credentials(
                [upsert], request_timeout=_TIMEOUT_S).values():
            future.result()
    except KafkaException as exc:
        raise as_saga_error(exc) from exc
