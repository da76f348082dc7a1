"""JSON bodies (saga inputs, command bodies, replies, signals) with orjson."""

from __future__ import annotations

from typing import Any

import orjson

from saga.errors import CodecError, PayloadTooLarge


def dumps_body(value: Any, *, limit: int | None = None) -> bytes:
    try:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError as exc:
        raise CodecError(f"body is not JSON-serialisable: {exc}",
                         hint="pass dicts, lists, strings, numbers, booleans or None") from exc
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(f"body of {len(data)} bytes exceeds the limit of {limit}",
                              hint="raise SAGA_MAX_PAYLOAD_BYTES or pass a reference instead")
    return data


def loads_body(data: bytes, *, limit: int | None = None) -> Any:
    if limit is not None and len(data) > limit:
        raise PayloadTooLarge(f"body of {len(data)} bytes exceeds the limit of {limit}",
                              hint="raise SAGA_MAX_PAYLOAD_BYTES or send a smaller body")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"body is not valid JSON: {exc}",
                         hint="send a UTF-8 JSON document") from exc
