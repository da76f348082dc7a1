"""Avro records in the single-object encoding, with schema evolution.

Framing (Avro spec, "Single object encoding"): ``C3 01``, the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's canonical form, then the binary record.
The fingerprint names the writer schema, so a reader can tell garbage, a truncated
record and a schema it has never seen apart, and reads old versions with the newest.

Schemas live in ``schemas/<kind>.v<N>.avsc``; the highest N of a kind is what this
build writes and reads into. Every older version stays in the folder forever: it is
how data written last year still decodes.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import orjson
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

from saga import _data
from saga.codec.avro_binary import Writer, compile_writer
from saga.errors import (
    CodecError,
    NotCompiled,
    NotFramed,
    SchemaMismatch,
    TruncatedRecord,
    UnknownSchema,
)

MAGIC = b"\xc3\x01"
HEADER_LEN = len(MAGIC) + 8
KINDS = ("inbox_message", "journal_event", "command", "timer_request", "dead_letter",
         "state_change", "schedule_entry")
_FILE = re.compile(r"^(?P<kind>[a-z_]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True)
class SchemaVersion:
    kind: str
    version: int
    parsed: Any
    fingerprint: bytes
    # The compiled writer (saga/codec/avro_binary.py); None where a type is not compiled.
    write: Writer | None


class AvroCodec:
    """Encodes and decodes every message kind; safe to share, holds no mutable state."""

    def __init__(self, schema_dir: Path | None = None) -> None:
        folder: Traversable = schema_dir or _data.schema_dir()
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._latest: dict[str, SchemaVersion] = {}
        paths = sorted((p for p in folder.iterdir() if p.name.endswith(".avsc")),
                       key=lambda p: p.name)
        for path in paths:
            match = _FILE.match(path.name)
            if match is None:
                raise CodecError(f"schema file {path.name} is not named <kind>.v<N>.avsc")
            parsed = parse_schema(orjson.loads(path.read_bytes()), _write_hint=True)
            fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
            schema = SchemaVersion(match["kind"], int(match["version"]), parsed, fp,
                                   compile_writer(parsed))
            self._by_fingerprint[fp] = schema
            current = self._latest.get(schema.kind)
            if current is None or current.version < schema.version:
                self._latest[schema.kind] = schema
        missing = set(KINDS) - set(self._latest)
        if missing:
            raise CodecError(f"no schema for {sorted(missing)} in {folder}")

    def versions(self, kind: str) -> list[int]:
        return sorted(s.version for s in self._by_fingerprint.values() if s.kind == kind)

    def encode(self, kind: str, record: dict[str, Any], *, version: int | None = None) -> bytes:
        """Frame ``record`` with the newest schema of ``kind`` (or an explicit version)."""
        schema = self._schema(kind, version)
        if schema.write is not None:
            parts = [MAGIC, schema.fingerprint]
            try:
                schema.write(record, parts)
                return b"".join(parts)
            except NotCompiled:
                pass  # fastavro answers: the record, its defaults filled, or its error
        out = io.BytesIO()
        out.write(MAGIC)
        out.write(schema.fingerprint)
        try:
            schemaless_writer(out, schema.parsed, record, strict_allow_default=True)
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
            raise SchemaMismatch(f"{kind} record does not fit schema v{schema.version}: {exc}",
                                 hint="check field names and types against schemas/") from exc
        return out.getvalue()

    def decode(self, data: bytes, *, expect: str | None = None) -> tuple[str, dict[str, Any]]:
        """Return ``(kind, record)``, the record shaped by the newest schema of its kind."""
        if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
            raise NotFramed(f"{len(data)} bytes without the Avro single-object marker C3 01",
                            hint="not written by a kafka-saga client, or corrupt")
        if len(data) < HEADER_LEN:
            raise TruncatedRecord(f"record of {len(data)} bytes ends inside its 10-byte header")
        writer = self._by_fingerprint.get(data[len(MAGIC) : HEADER_LEN])
        if writer is None:
            raise UnknownSchema(
                f"unknown schema fingerprint {data[len(MAGIC):HEADER_LEN].hex()}",
                hint="written by a newer kafka-saga or another application; upgrade this one",
            )
        if expect is not None and writer.kind != expect:
            raise SchemaMismatch(f"expected a {expect} record, got a {writer.kind}")
        reader = self._latest[writer.kind]
        buffer = io.BytesIO(data)
        buffer.seek(HEADER_LEN)
        try:
            # The same schema on both sides needs no resolution (most records): skipping
            # it halves the cost of a decode.
            record = schemaless_reader(buffer, writer.parsed,
                                       None if reader is writer else reader.parsed,
                                       return_record_name=True)
        except (EOFError, StopIteration) as exc:
            raise TruncatedRecord(f"{writer.kind} v{writer.version} record ends early") from exc
        except (ValueError, IndexError, UnicodeDecodeError, KeyError, TypeError) as exc:
            raise SchemaMismatch(
                f"{writer.kind} v{writer.version} record is corrupt: {exc}") from exc
        if buffer.tell() != len(data):
            raise SchemaMismatch(
                f"{len(data) - buffer.tell()} stray bytes after a {writer.kind} record")
        if not isinstance(record, dict):
            raise SchemaMismatch(f"{writer.kind} record decoded to {type(record).__name__}")
        return writer.kind, record

    def _schema(self, kind: str, version: int | None) -> SchemaVersion:
        if version is None:
            try:
                return self._latest[kind]
            except KeyError:
                raise CodecError(f"unknown message kind {kind!r}; known: {KINDS}") from None
        for schema in self._by_fingerprint.values():
            if schema.kind == kind and schema.version == version:
                return schema
        raise CodecError(f"no schema {kind}.v{version}.avsc")
