"""The services SDK: command handlers on aiokafka, deduplicated on command_id.

    service = Service("payments")

    @service.handler("charge")
    async def charge(cmd: Command) -> dict:
        ...                         # cmd.body is the saga's input for the step
        cmd.state.put("k", value)   # business state, committed with the dedup record
        raise BusinessError("card_declined")   # a failure the saga sees at once

Delivery is at least once; effects are exactly once: the handler's state writes and the
reply are stored in one RocksDB WriteBatch keyed by command_id, so a redelivered
command gets its stored reply again instead of running twice. Any exception other than
BusinessError is a technical failure, retried by the saga's RetryPolicy.
"""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from rocksdict import AccessType, Options, Rdict, WriteBatch

from saga.config import Settings
from saga.engine.inputs import CommandReply
from saga.errors import CodecError, SagaError
from saga.kafka.messages import Messages, dead_letter_headers

log = logging.getLogger("saga.services")
Handler = Callable[["Command"], Awaitable[Any]]

_REPLY = b"r\x00"
_DATA = b"d\x00"


class BusinessError(SagaError):
    """A failure the saga must not retry: out of stock, card declined."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason + (f": {detail}" if detail else ""))
        self.reason = reason


class ServiceStore:
    """A service's RocksDB: its business state and the replies it has sent."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        options = Options(raw_mode=True)
        options.create_if_missing(not read_only)
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        access = AccessType.read_only() if read_only else AccessType.read_write()
        self._db = Rdict(str(path), options, access_type=access)

    def get(self, key: str) -> Any:
        raw = self._db.get(_DATA + key.encode())
        return None if raw is None else orjson.loads(raw)

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        start = _DATA + prefix.encode()
        iterator = self._db.iter()
        iterator.seek(start)
        while iterator.valid() and iterator.key().startswith(start):
            yield iterator.key()[len(_DATA):].decode(), orjson.loads(iterator.value())
            iterator.next()

    def reply_for(self, command_id: str) -> dict[str, Any] | None:
        raw = self._db.get(_REPLY + command_id.encode())
        return None if raw is None else dict(orjson.loads(raw))

    def commit(self, writes: dict[str, Any], command_id: str | None = None,
               reply: dict[str, Any] | None = None) -> None:
        """Write the handler's state and its reply atomically."""
        batch = WriteBatch(raw_mode=True)
        for key, value in writes.items():
            batch.put(_DATA + key.encode(), orjson.dumps(value))
        if command_id is not None:
            batch.put(_REPLY + command_id.encode(), orjson.dumps(reply))
        self._db.write(batch)

    def close(self) -> None:
        self._db.close()


class StagedState:
    """Reads see the handler's own writes; writes land only if the handler succeeds."""

    def __init__(self, store: ServiceStore) -> None:
        self._store = store
        self.writes: dict[str, Any] = {}

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.writes:
            return self.writes[key]
        value = self._store.get(key)
        return default if value is None else value

    def put(self, key: str, value: Any) -> None:
        self.writes[key] = value

    def scan(self, prefix: str) -> Iterator[tuple[str, Any]]:
        seen = dict(self._store.scan(prefix))
        seen.update({k: v for k, v in self.writes.items() if k.startswith(prefix)})
        yield from sorted(seen.items())


@dataclass(frozen=True)
class Command:
    command_id: str
    saga_id: str
    saga_type: str
    name: str
    kind: str  # ACTION or COMPENSATION
    attempt: int
    body: Any
    state: StagedState = field(repr=False)


class Service:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Handler] = {}
        self.on_start: list[Callable[[ServiceStore], None]] = []

    def handler(self, command: str) -> Callable[[Handler], Handler]:
        def register(fn: Handler) -> Handler:
            self.handlers[command] = fn
            return fn

        return register

    async def run(self, settings: Settings, *, stop: asyncio.Event | None = None) -> None:
        runner = _Runner(self, settings)
        await runner.run(stop or asyncio.Event())


def store_path(settings: Settings, service: str) -> Path:
    return settings.state_dir / "services" / service / "store"


class _Runner:
    def __init__(self, service: Service, settings: Settings) -> None:
        self.service = service
        self.settings = settings
        self.messages = Messages(max_payload_bytes=settings.max_payload_bytes)
        self.topic = settings.topic(f"{service.name}.commands")
        self.dlq = settings.topic("saga.dlq")
        self.handled = 0
        self.duplicates = 0

    async def run(self, stop: asyncio.Event) -> None:
        store = ServiceStore(store_path(self.settings, self.service.name))
        for hook in self.service.on_start:
            hook(store)
        consumer = AIOKafkaConsumer(
            self.topic, bootstrap_servers=self.settings.bootstrap_servers,
            group_id=f"{self.settings.topic_prefix}service-{self.service.name}",
            isolation_level="read_committed", enable_auto_commit=False,
            auto_offset_reset="earliest")
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers,
                                    enable_idempotence=True, linger_ms=5)
        await consumer.start()
        await producer.start()
        log.info("service %s consuming %s", self.service.name, self.topic)
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200, max_records=500)
                pending = []
                for records in batches.values():
                    for record in records:
                        pending.extend(await self._handle(record, store, producer))
                if pending:
                    await asyncio.gather(*pending)
                    await consumer.commit()
        finally:
            await consumer.stop()
            await producer.stop()
            store.close()

    async def _handle(self, record: Any, store: ServiceStore, producer: AIOKafkaProducer
                      ) -> list[Awaitable[Any]]:
        try:
            command = self.messages.decode_command(record.value)
        except CodecError as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return [await self._dead_letter(producer, record, "undecodable", detail)]
        command_id = command["command_id"]
        reply = store.reply_for(command_id)
        if reply is not None:
            self.duplicates += 1
        else:
            reply = await self._run_handler(command, store)
        value = self.messages.encode_inbox(command["saga_id"], CommandReply(
            command_id, self.service.name, reply["outcome"], reply["result"], reply["error"]),
            message_id=f"reply:{command_id}")
        return [await producer.send(command["reply_topic"], value,
                                    key=command["saga_id"].encode())]

    async def _run_handler(self, command: dict[str, Any], store: ServiceStore
                           ) -> dict[str, Any]:
        handler = self.service.handlers.get(command["name"])
        staged = StagedState(store)
        reply: dict[str, Any]
        if handler is None:
            reply = {"outcome": "BUSINESS_ERROR", "result": None,
                     "error": f"unknown_command: {self.service.name} has no handler for "
                              f"{command['name']!r}"}
        else:
            try:
                result = await handler(Command(
                    command["command_id"], command["saga_id"], command["saga_type"],
                    command["name"], command["kind"], command["attempt"], command["body"],
                    staged))
                orjson.dumps(result)
                reply = {"outcome": "OK", "result": result, "error": ""}
            except BusinessError as exc:
                staged.writes.clear()
                reply = {"outcome": "BUSINESS_ERROR", "result": None, "error": exc.reason}
            except Exception as exc:  # noqa: BLE001 - any other failure is technical
                staged.writes.clear()
                log.warning("handler %s.%s failed:\n%s", self.service.name, command["name"],
                            traceback.format_exc())
                reply = {"outcome": "TECHNICAL_ERROR", "result": None,
                         "error": f"{type(exc).__name__}: {exc}"}
        store.commit(staged.writes, command["command_id"], reply)
        self.handled += 1
        return reply

    async def _dead_letter(self, producer: AIOKafkaProducer, record: Any, reason: str,
                           detail: str) -> Awaitable[Any]:
        component = f"service:{self.service.name}"
        value = self.messages.encode_dead_letter(
            topic=record.topic, partition=record.partition, offset=record.offset,
            key=record.key, value=record.value, reason=reason, detail=detail,
            component=component)
        headers = [(k, v if isinstance(v, bytes) else str(v).encode())
                   for k, v in dead_letter_headers(reason, detail, component, record.topic,
                                                   record.partition, record.offset)]
        log.warning("dead-lettered %s/%s/%s: %s", record.topic, record.partition,
                    record.offset, reason)
        future: Awaitable[Any] = await producer.send(self.dlq, value, key=record.key,
                                                     headers=headers)
        return future


def read_store(settings: Settings, service: str) -> ServiceStore:
    """Open a service's store read-only (for reports while the service runs)."""
    return ServiceStore(store_path(settings, service), read_only=True)
