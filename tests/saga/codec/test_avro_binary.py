"""The compiled Avro writers against fastavro, the reference: the same bytes for every
record both accept, and fastavro's answer (bytes or its error) for every record the
compiled path declines."""

from __future__ import annotations

import io
from collections import OrderedDict
from enum import StrEnum
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from saga.codec import AvroCodec
from saga.codec.avro import MAGIC, SchemaVersion
from saga.codec.avro_binary import compile_writer
from saga.errors import NotCompiled, SchemaMismatch
from tests.saga.fuzz.budget import fuzz

CODEC = AvroCodec()
SCHEMAS = sorted(CODEC._by_fingerprint.values(), key=lambda s: (s.kind, s.version))
# What a coordinator or a service writes per saga: falling back to fastavro for any of
# them would cost the hot path without failing a test, so it is asserted here.
HOT = ("inbox_message", "journal_event", "command", "timer_request", "state_change")


def _fastavro(schema: SchemaVersion, record: Any) -> bytes:
    out = io.BytesIO()
    out.write(MAGIC + schema.fingerprint)
    schemaless_writer(out, schema.parsed, record, strict_allow_default=True)
    return out.getvalue()


def _values(schema: Any, named: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values of a fastavro-parsed schema, as the coordinator and services hand them."""
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    if isinstance(schema, list):
        branches = []
        for branch in schema:
            branch = named.get(branch, branch) if isinstance(branch, str) else branch
            if isinstance(branch, dict) and branch.get("type") == "record":
                branches.append(st.tuples(st.just(branch["name"]), _values(branch, named)))
            else:
                branches.append(_values(branch, named))
        return st.one_of(branches)
    kind = schema if isinstance(schema, str) else schema["type"]
    match kind:
        case "null":
            return st.none()
        case "boolean":
            return st.booleans()
        case "int":
            return st.integers(-(1 << 31), (1 << 31) - 1)
        case "long":
            return st.integers(-(1 << 63), (1 << 63) - 1)
        case "string":
            return st.text()
        case "bytes":
            return st.binary(max_size=20_000)
        case "enum":
            return st.sampled_from(schema["symbols"])
        case "array":
            return st.lists(_values(schema["items"], named), max_size=3)
        case "record":
            return st.fixed_dictionaries({field["name"]: _values(field["type"], named)
                                          for field in schema["fields"]})
    raise AssertionError(f"no strategy for {schema}")


def _records(schema: SchemaVersion) -> st.SearchStrategy[Any]:
    return _values(schema.parsed, schema.parsed.get("__named_schemas", {}))


@pytest.mark.parametrize("kind", HOT)
def test_every_record_written_per_saga_has_a_compiled_writer(kind: str) -> None:
    assert CODEC._latest[kind].write is not None


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: f"{s.kind}.v{s.version}")
@fuzz(150)
@given(data=st.data())
def test_the_compiled_writer_writes_what_fastavro_writes(schema: SchemaVersion,
                                                         data: st.DataObject) -> None:
    record = data.draw(_records(schema))
    expected = _fastavro(schema, record)
    assert CODEC.encode(schema.kind, record, version=schema.version) == expected
    if schema.write is not None:
        parts = [MAGIC, schema.fingerprint]
        schema.write(record, parts)  # never declines a record fastavro accepts as is
        assert b"".join(parts) == expected


class Outcome(StrEnum):
    OK = "OK"


REPLY_BODY = {"command_id": "o-1/0/1", "service": "payments", "outcome": Outcome.OK,
              "result": b"{}", "error": ""}
REPLY = {"saga_id": "o-1", "message_id": "m-1", "sent_at_ms": 5,
         "body": ("saga.Reply", REPLY_BODY)}


def test_values_of_a_str_enum_are_written_as_their_symbols() -> None:
    schema = CODEC._latest["inbox_message"]
    assert CODEC.encode("inbox_message", REPLY) == _fastavro(schema, REPLY)


ENTRY = {"saga_id": "o-1", "seq": 1, "type": "SagaStarted", "at_ms": 1, "body": b"{}",
         "cause": None}
# Records the compiled path declines; fastavro then answers, as it did before it.
FILLED = {"saga_id": "o-1", "message_id": "m-1", "sent_at_ms": 5,
          "body": ("saga.Start", {"saga_type": "order", "input": b"{}"})}  # defaults filled
DECLINED_BUT_WRITTEN = {"defaults filled": ("inbox_message", FILLED),
                        "a dict subclass": ("journal_event", OrderedDict(
                            saga_id="o-1", seq=1, type="SagaStarted", at_ms=1, body=b"{}",
                            cause="m-1")),
                        "a float for a long": ("journal_event", {**ENTRY, "seq": 1.0}),
                        "bytearray for bytes": ("journal_event", {
                            "saga_id": "o-1", "seq": 1, "type": "SagaStarted", "at_ms": 1,
                            "body": bytearray(b"{}"), "cause": None})}


@pytest.mark.parametrize("case", sorted(DECLINED_BUT_WRITTEN))
def test_what_the_compiled_path_declines_fastavro_writes(case: str) -> None:
    kind, record = DECLINED_BUT_WRITTEN[case]
    assert isinstance(record, dict)
    schema = CODEC._latest[kind]
    assert schema.write is not None
    with pytest.raises(NotCompiled):
        schema.write(record, [])
    assert CODEC.encode(kind, record) == _fastavro(schema, record)


REFUSED = {"extra field": {**ENTRY, "extra": 1},
           "missing field without a default": {k: v for k, v in ENTRY.items() if k != "seq"},
           "string for a long": {**ENTRY, "seq": "1"},
           "long out of range": {**ENTRY, "at_ms": 1 << 64},
           "int for a string": {**ENTRY, "type": 7},
           "int for bytes": {**ENTRY, "body": 7},
           "not a record": ["o-1", 1]}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_what_fastavro_refuses_is_still_a_schema_mismatch(case: str) -> None:
    with pytest.raises(SchemaMismatch, match="does not fit schema"):
        CODEC.encode("journal_event", REFUSED[case])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["saga.Nothing", "Reply"])
def test_a_union_of_records_refuses_a_name_it_does_not_hold(name: str) -> None:
    record = {**REPLY, "body": (name, REPLY_BODY)}
    with pytest.raises(SchemaMismatch, match="not found in schema"):
        CODEC.encode("inbox_message", record)


def test_a_schema_with_a_type_not_compiled_has_no_writer() -> None:
    assert compile_writer({"type": "fixed", "name": "f", "size": 4}) is None
    assert compile_writer({"type": "record", "name": "r", "fields": [
        {"name": "m", "type": {"type": "map", "values": "long"}}]}) is None
