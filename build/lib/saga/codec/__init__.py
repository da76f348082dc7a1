"""Wire formats: Avro records in single-object framing, and JSON bodies."""

from saga.codec.avro import KINDS, AvroCodec
from saga.codec.json import dumps_body, loads_body

__all__ = ["KINDS", "AvroCodec", "dumps_body", "loads_body"]
