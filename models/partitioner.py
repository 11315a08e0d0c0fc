"""Kafka's default partitioner, so replay and the service agree on a record's partition.

Every Kafka client's default producer puts a keyed record on
`toPositive(murmur2(key)) % partitions`; the service co-partitions by customer id
with it, and replay (contract section 9) computes the same partition for a file's
records. Pure Python here (`models/` imports no Kafka client); a test pins it to
kafka-python's implementation.
"""

from __future__ import annotations

from functools import lru_cache
from struct import unpack_from
from typing import Any, Final

_SEED: Final = 0x9747B28C
_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 as `org.apache.kafka.common.utils.Utils.murmur2`, as an unsigned int."""
    length = len(data)
    h = (_SEED ^ length) & _MASK
    whole = length & ~3
    for (k,) in _words(data, whole):
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    extra = length & 3
    if extra:
        if extra == 3:
            h ^= data[whole + 2] << 16
        if extra >= 2:
            h ^= data[whole + 1] << 8
        h ^= data[whole]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def _words(data: bytes, whole: int) -> list[tuple[int]]:
    return [unpack_from("<I", data, i) for i in range(0, whole, 4)]


@lru_cache(maxsize=1 << 16)
def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a keyed record. Customers recur,
    so it is cached (a hash of a 10-byte id costs a few µs in Python)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def record_key(line: dict[str, Any]) -> str | None:
    """The key of a replay-format record (contract section 9): its `key` when that is a
    string, else the value's `customer_id`, else none (partition 0 in replay)."""
    key = line.get("key")
    if isinstance(key, str):
        return key
    value = line.get("value")
    if isinstance(value, dict):
        cid = value.get("customer_id")
        if isinstance(cid, str):
            return cid
    return None
