"""A service's changelog topic, ``<service>.state``: restoring the local store from it
on assignment, and reading the whole of it (reports, audits, from any machine).

Both read read_committed: a change is state only once the transaction that wrote it,
with the reply and the command's offset, has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from saga.config import KafkaConnection, Settings
from saga.errors import CodecError
from saga.kafka import clients
from saga.kafka.records import RecordCodec
from saga.service.state import ServiceState
from saga.store.service_store import ServiceStore, StateChange

log = logging.getLogger("saga.services")


def restore(store: ServiceStore, kafka: KafkaConnection, topic: str, partitions: Iterable[int],
            codec: RecordCodec, *, flush_every: int = 5000) -> int:
    """Apply changes past the store's offsets for ``partitions`` (newer versions only);
    returns the changes read."""
    starts = {p: store.store.offset(p) for p in partitions}
    pending: list[StateChange] = []
    offsets: dict[int, int] = {}
    read = 0
    for item in clients.read_to_end(kafka, topic, starts):
        if isinstance(item, clients.EndOfPartition):
            offsets[item.partition] = item.offset
            continue
        _, partition, offset = clients.where(item)
        offsets[partition] = offset + 1
        change = _decode(codec, item.value(), topic, partition, offset)
        if change is None:
            continue
        pending.append(change)
        read += 1
        if len(pending) >= flush_every:
            store.apply(pending, offsets, newer_only=True)
            pending = []
    store.apply(pending, offsets, newer_only=True)
    return read


def read_state(settings: Settings, service: str) -> ServiceState:
    """The service's state as its changelog holds it now (every partition)."""
    topic = settings.topic(f"{service}.state")
    codec = RecordCodec.for_settings(settings)
    state = ServiceState()
    for record in clients.read_records(settings.kafka, topic):
        change = _decode(codec, record.value, topic, record.partition, record.offset)
        if change is not None:
            state.fold(change)
    return state


def _decode(codec: RecordCodec, value: bytes | None, topic: str, partition: int,
            offset: int) -> StateChange | None:
    if value is None:
        return None  # a tombstone: compaction's, never ours
    try:
        return codec.decode_state_change(value, topic)
    except CodecError as exc:
        # Only a foreign writer could put one here; say where, and go on.
        log.warning("%s/%d/%d is not a state change, passed over: %s", topic, partition,
                    offset, exc)
        return None
