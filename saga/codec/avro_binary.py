"""Avro's binary encoding of the records this build writes, compiled to closures.

fastavro is the reference: it parses the schemas, resolves old writer versions, reads
every record and says what is wrong with a malformed one. Writing is where it costs
more than the bytes do: a coordinator encodes about twenty records per order saga, and
fastavro's entry point (a buffer, a writer and its strictness checks per call) took
about an eighth of the coordinator's CPU. Here each schema is compiled once into
closures that write exactly its fields, about 2x faster per record (reading is not
compiled: written in Python it was no faster than fastavro's).

The contract, held by tests/saga/codec/test_avro_binary.py against fastavro itself:
where a compiled writer returns, its bytes are the ones fastavro writes; anything it is
not sure of (a missing or extra field, a value of another type, a long out of range, a
type it does not compile) raises :class:`NotCompiled`, and the caller hands the same
record to fastavro, whose answer (the bytes, its defaults filled in, or its error) is
then the answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from saga.errors import NotCompiled

Parts = list[bytes]
Writer = Callable[[Any, Parts], None]

_LONG_MIN, _LONG_MAX = -(1 << 63), (1 << 63) - 1
_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1


# Timestamps in milliseconds are the large longs, and one batch's records share a few.
@functools.lru_cache(maxsize=4096)
def _varint(value: int) -> bytes:
    value = (value << 1) ^ (value >> 63)
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


# Lengths, sequence numbers and union branches are small: most longs are looked up.
_SMALL = tuple(_varint(n) for n in range(1 << 13))


def _long_bytes(value: int) -> bytes:
    if 0 <= value < 8192:
        return _SMALL[value]
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise NotCompiled(f"{value} does not fit a long")
    return _varint(value)


def _write_long(value: Any, parts: Parts) -> None:
    if not isinstance(value, int):
        raise NotCompiled(f"{type(value).__name__} for a long")
    parts.append(_SMALL[value] if 0 <= value < 8192 else _long_bytes(value))


def _write_int(value: Any, parts: Parts) -> None:
    if not isinstance(value, int) or not _INT_MIN <= value <= _INT_MAX:
        raise NotCompiled(f"{value!r} for an int")
    parts.append(_long_bytes(value))


def _write_string(value: Any, parts: Parts) -> None:
    if not isinstance(value, str):
        raise NotCompiled(f"{type(value).__name__} for a string")
    try:
        data = value.encode()
    except UnicodeEncodeError as exc:
        raise NotCompiled(str(exc)) from exc
    size = len(data)
    parts.append(_SMALL[size] if size < 8192 else _long_bytes(size))
    parts.append(data)


def _write_bytes(value: Any, parts: Parts) -> None:
    if type(value) is not bytes:
        raise NotCompiled(f"{type(value).__name__} for bytes")
    size = len(value)
    parts.append(_SMALL[size] if size < 8192 else _long_bytes(size))
    parts.append(value)


def _write_boolean(value: Any, parts: Parts) -> None:
    if value is True:
        parts.append(b"\x01")
    elif value is False:
        parts.append(b"\x00")
    else:
        raise NotCompiled(f"{type(value).__name__} for a boolean")


def _write_null(value: Any, parts: Parts) -> None:
    if value is not None:
        raise NotCompiled(f"{type(value).__name__} for null")


_PRIMITIVE_WRITERS: dict[str, Writer] = {
    "null": _write_null, "boolean": _write_boolean, "int": _write_int,
    "long": _write_long, "string": _write_string, "bytes": _write_bytes}


def _resolve(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema in named:
        return named[schema]
    return schema


def compile_writer(schema: Any) -> Writer | None:
    """A writer for a fastavro-parsed schema, or None when it holds a type not compiled."""
    try:
        return _writer(schema, schema.get("__named_schemas", {}))
    except NotCompiled:
        return None


def _writer(schema: Any, named: dict[str, Any]) -> Writer:
    schema = _resolve(schema, named)
    if isinstance(schema, str):
        if schema in _PRIMITIVE_WRITERS:
            return _PRIMITIVE_WRITERS[schema]
        raise NotCompiled(f"type {schema}")
    if isinstance(schema, list):
        return _union_writer(schema, named)
    match schema.get("type"):
        case "record":
            return _record_writer(schema, named)
        case "enum":
            index = {symbol: _long_bytes(n) for n, symbol in enumerate(schema["symbols"])}

            def write_enum(value: Any, parts: Parts) -> None:
                try:
                    parts.append(index[value])
                except (KeyError, TypeError) as exc:
                    raise NotCompiled(f"{value!r} is not a symbol") from exc
            return write_enum
        case str() as primitive if primitive in _PRIMITIVE_WRITERS:
            return _PRIMITIVE_WRITERS[primitive]
        case other:
            raise NotCompiled(f"type {other}")


def _record_writer(schema: dict[str, Any], named: dict[str, Any]) -> Writer:
    fields = tuple((field["name"], _writer(field["type"], named)) for field in schema["fields"])
    count = len(fields)

    def write_record(value: Any, parts: Parts) -> None:
        # As many keys as fields, each of them found: exactly the schema's fields. A
        # missing field (fastavro fills its default) or an extra one (fastavro refuses
        # it) is left to fastavro.
        if type(value) is not dict or len(value) != count:
            raise NotCompiled("not a dict with exactly the schema's fields")
        append = parts.append
        try:
            for name, write in fields:
                field = value[name]
                # Strings are most fields: written here, without a call per field.
                if write is _write_string and type(field) is str:
                    try:
                        data = field.encode()
                    except UnicodeEncodeError as exc:
                        raise NotCompiled(str(exc)) from exc
                    size = len(data)
                    append(_SMALL[size] if size < 8192 else _long_bytes(size))
                    append(data)
                else:
                    write(field, parts)
        except KeyError as exc:
            raise NotCompiled(f"no field {exc}") from exc
    return write_record


def _union_writer(branches: list[Any], named: dict[str, Any]) -> Writer:
    resolved = [_resolve(branch, named) for branch in branches]
    if all(isinstance(branch, dict) and branch.get("type") == "record" for branch in resolved):
        # A union of records is written as fastavro's (name, record) tuple.
        by_name = {branch["name"]: (_long_bytes(n), _record_writer(branch, named))
                   for n, branch in enumerate(resolved)}

        def write_named(value: Any, parts: Parts) -> None:
            if type(value) is not tuple or len(value) != 2 or value[0] not in by_name:
                raise NotCompiled("not a (record name, record) of this union")
            index, write = by_name[value[0]]
            parts.append(index)
            write(value[1], parts)
        return write_named
    if len(resolved) == 2 and resolved[0] == "null" and resolved[1] in ("string", "bytes"):
        write_value = _PRIMITIVE_WRITERS[resolved[1]]

        def write_optional(value: Any, parts: Parts) -> None:
            if value is None:
                parts.append(b"\x00")
            else:
                parts.append(b"\x02")
                write_value(value, parts)
        return write_optional
    raise NotCompiled(f"union {branches}")
