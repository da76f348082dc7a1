"""Which partition a saga lives in: Kafka's default partitioner, murmur2 of the key.

The Java client, aiokafka and librdkafka's ``murmur2_random`` all place a keyed record
in ``(murmur2(key) & 0x7fffffff) % partitions``; every kafka-saga producer uses it (see
clients.py), so this function names the partition of a saga's inbox, journal and timers
without asking Kafka. Used to compare projections partition by partition.
"""

from __future__ import annotations

_SEED = 0x9747B28C
_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length - length % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h


def partition_of(saga_id: str, partitions: int) -> int:
    """The partition of ``saga_id`` in topics of ``partitions`` partitions."""
    return (murmur2(saga_id.encode()) & 0x7FFFFFFF) % partitions
