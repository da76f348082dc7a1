"""The visibility server's index: every saga's state, summary and history, with the
indexes that list them, a cache of saga.journal and saga.dlq like every local store.

`apply` writes one batch of changes atomically with the offsets read to (journal and
dead-letter topic), so a restart resumes where the last batch ended and a lost index is
rebuilt by replaying both topics. The states are the same pure fold as the coordinator's
projection, so the index agrees with it saga by saga.

RocksDB keys (saga ids never hold NUL; numbers zero-padded so keys sort by them):
  s\\0<id>                          the folded SagaState, canonical JSON
  u\\0<id>                          its summary, JSON (`saga status --json`)
  b\\0<id>                          the inbox record whose decision started it
  e\\0<id>\\0<seq>                   one journal entry as a history row, JSON
  i\\0<list>\\0<inverse start>\\0<id>  listing indexes, newest first: `a` (all),
                                   `s`<status>, `t`<type>, `x`<type>\\0<status>
  c\\0<status>                      how many sagas have it
  n\\0timers, n\\0letters            how many pending timers and dead letters
  h\\0<type>\\0<bucket>              ended sagas of the type whose duration falls in
                                   the bucket (duration_bucket), g\\0<type> the longest
  t\\0<due ms>\\0<timer id>           pending timers -> saga id
  l\\0<partition>\\0<offset>          a dead letter, JSON, with its bytes (a redrive's)
  k\\0<partition>\\0<offset>          the same letter as shown (no bytes): listings
  o\\0<partition>, odlq\\0<partition> the journal's and saga.dlq's offsets (RocksStore)

Every read a request makes is bounded: listings stop after ``scan_limit`` rows read
(with a cursor to go on from), histories and dead letters come a page at a time, and
what a dashboard polls (counts, durations, pending timers, dead letters) are counters
the writer keeps, so a request never walks the whole index.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from saga.engine import events as ev
from saga.engine.lifecycle import SagaStatus
from saga.engine.state import SagaState
from saga.errors import ConfigError, StoreCorrupt
from saga.kafka.dead_letters import shown
from saga.store.projection import run_history_keys
from saga.store.rocksdb import RocksStore

FORMAT = b"3"
DLQ_STREAM = "dlq"
_STATE, _SUMMARY, _STARTED_BY, _ENTRY = b"s\x00", b"u\x00", b"b\x00", b"e\x00"
_LIST, _COUNT, _TIMER, _LETTER = b"i\x00", b"c\x00", b"t\x00", b"l\x00"
_SHOWN, _HISTOGRAM, _LONGEST = b"k\x00", b"h\x00", b"g\x00"
_PENDING_TIMERS, _LETTERS = b"n\x00timers", b"n\x00letters"
_COUNTER = struct.Struct(">q")
_NEVER = 10**16  # past every epoch millisecond: inverse times sort newest first
#: Index rows one request reads at most unless told otherwise (SAGA_SERVER_SCAN_LIMIT).
SCAN_LIMIT = 10_000
#: A history page's rows and bytes at most: a saga may hold 100,000 entries of up to
#: SAGA_MAX_PAYLOAD_BYTES each.
HISTORY_PAGE_BYTES = 8 * 1024 * 1024

# Durations are kept as counts per logarithmic bucket, each 2 % wider than the one
# before: a percentile is then read from a few hundred counters instead of a scan of
# every ended saga, and is off by at most 2 % (the longest is kept exactly).
_GROWTH = 1.02
_LOG_GROWTH = math.log(_GROWTH)


def duration_bucket(ms: int) -> int:
    """The bucket of a duration: 0 for 0 ms, then ``1 + floor(log_1.02(ms))``."""
    return 0 if ms < 1 else 1 + int(math.log(ms) / _LOG_GROWTH)


def bucket_top(bucket: int) -> int:
    """The longest whole duration the bucket holds (what a percentile in it reads)."""
    return 0 if bucket < 1 else max(0, math.ceil(_GROWTH ** bucket) - 1)


def percentiles(buckets: Mapping[int, int], longest: int) -> dict[str, int]:
    """count, p50, p90, p99 and max of durations counted per bucket; a percentile is its
    bucket's top, never above the longest seen."""
    ordered = sorted((b, n) for b, n in buckets.items() if n > 0)
    count = sum(n for _, n in ordered)

    def at(share: float) -> int:
        rank = min(count - 1, int(share * count))  # as ordered[int(share * n)] would
        seen = 0
        for bucket, n in ordered:
            seen += n
            if seen > rank:
                return min(bucket_top(bucket), longest)
        return longest

    if not count:
        return {"count": 0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    return {"count": count, "p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": longest}


@dataclass(frozen=True)
class SagaChange:
    """One saga's state before and after a batch, with the entries between."""

    before: SagaState | None
    after: SagaState
    entries: list[ev.Entry]
    started_by: str | None = None  # the inbox position, when ``entries`` start the saga


@dataclass(frozen=True)
class ListQuery:
    status: SagaStatus | None = None
    saga_type: str | None = None
    id_prefix: str | None = None
    started_after_ms: int | None = None
    started_before_ms: int | None = None
    ended_after_ms: int | None = None
    ended_before_ms: int | None = None
    limit: int = 100
    cursor: str | None = None
    version: int | None = None
    #: attribute -> value the saga's attributes must hold (ctx.set_attributes)
    attributes: Mapping[str, Any] | None = None

    def takes(self, summary: Mapping[str, Any]) -> bool:
        """Whether a saga's summary fits every filter (the indexes narrow by status and
        type; the rest is checked here)."""
        started = summary.get("started_at_ms") or 0
        ended = summary.get("ended_at_ms")
        held = summary.get("attributes") or {}
        return ((self.status is None or summary.get("status") == self.status.value)
                and (self.saga_type is None or summary.get("type") == self.saga_type)
                and (self.id_prefix is None or str(summary.get("saga_id", "")).startswith(
                    self.id_prefix))
                and (self.version is None or summary.get("version") == self.version)
                and all(held.get(k) == v for k, v in (self.attributes or {}).items())
                and (self.started_after_ms is None or started >= self.started_after_ms)
                and (self.started_before_ms is None or started < self.started_before_ms)
                and (self.ended_after_ms is None
                     or (ended is not None and ended >= self.ended_after_ms))
                and (self.ended_before_ms is None
                     or (ended is not None and ended < self.ended_before_ms)))


def parse_attributes(pairs: Sequence[str] | None, *, named: str = "--attribute"
                     ) -> dict[str, Any] | None:
    """``KEY=VALUE`` filters on attributes (CLI flags, API query parameters): a VALUE that
    reads as JSON is that JSON (3, true), else the text itself."""
    if not pairs:
        return None
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"{named} {pair!r} is not KEY=VALUE",
                              hint=f"e.g. {named} tier=gold")
        try:
            out[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            out[key] = raw
    return out


def attribute_pairs(attributes: Mapping[str, Any] | None) -> list[str]:
    """The inverse of parse_attributes: what to send for ``attributes`` (text that would
    read as JSON, "3", goes as a JSON string)."""
    def shown(value: Any) -> str:
        if isinstance(value, str):
            try:
                orjson.loads(value)
            except orjson.JSONDecodeError:
                return value
        return orjson.dumps(value).decode()

    return [f"{k}={shown(v)}" for k, v in (attributes or {}).items()]


@dataclass(frozen=True)
class Page:
    """Up to ``limit`` rows, and where to go on from: None once nothing is left. A page
    may hold fewer rows, even none, and still have a cursor: its request read as many
    index rows as it may (``scan_limit``) before finding more."""

    sagas: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class RawPage:
    """Rows already JSON (history entries), with the cursor of the next page."""

    rows: list[bytes]
    next_cursor: str | None


class VisibilityIndex:
    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self._store = RocksStore(path, fmt=FORMAT, what="visibility index",
                                 rebuilt_from="saga.journal and saga.dlq",
                                 read_only=read_only)

    @property
    def store(self) -> RocksStore:
        return self._store

    def close(self) -> None:
        self._store.close()

    # ---- writing -------------------------------------------------------------------
    def apply(self, changes: Iterable[SagaChange], letters: Iterable[dict[str, Any]],
              journal_offsets: Mapping[int, int], dlq_offsets: Mapping[int, int]) -> None:
        batch = self._store.batch()
        counters: dict[bytes, int] = {}
        longest: dict[bytes, int] = {}
        for change in changes:
            self._change(batch, change, counters, longest)
        for letter in letters:
            key = _letter_key(letter["partition"], letter["offset"])
            if self._store.get(key) is None:  # a replayed letter is not counted twice
                counters[_LETTERS] = counters.get(_LETTERS, 0) + 1
            batch.put(key, orjson.dumps(letter))
            batch.put(_SHOWN + key[len(_LETTER):], orjson.dumps(shown(letter)))
        for key, delta in counters.items():
            if delta:
                batch.put(key, _COUNTER.pack(self._count(key) + delta))
        for key, ms in longest.items():
            if ms > self._count(key):
                batch.put(key, _COUNTER.pack(ms))
        self._store.put_offsets(batch, journal_offsets)
        self._store.put_offsets(batch, dlq_offsets, DLQ_STREAM)
        self._store.write(batch)

    def _change(self, batch: Any, change: SagaChange, counters: dict[bytes, int],
                longest: dict[bytes, int]) -> None:
        before, after = change.before, change.after
        saga_id = after.saga_id.encode()
        old_keys = _list_keys(before) if before is not None and before.exists else set()
        new_keys = _list_keys(after) if after.exists else set()
        for key in old_keys - new_keys:
            batch.delete(key)
        for key in new_keys - old_keys:
            batch.put(key, b"")
        old_status = before.status.value if before is not None and before.status else None
        new_status = after.status.value if after.status else None
        if old_status != new_status:
            if old_status:
                key = _COUNT + old_status.encode()
                counters[key] = counters.get(key, 0) - 1
            if new_status:
                key = _COUNT + new_status.encode()
                counters[key] = counters.get(key, 0) + 1
        if after.terminal and not (before is not None and before.terminal):
            took = max(0, after.ended_at_ms - after.started_at_ms)
            saga_type = after.saga_type.encode()
            key = _HISTOGRAM + saga_type + b"\x00" + b"%04d" % duration_bucket(took)
            counters[key] = counters.get(key, 0) + 1
            most = _LONGEST + saga_type
            longest[most] = max(longest.get(most, 0), took)
        old_timers = {t.timer_id: t.due_ms for t in before.pending_timers()} if before else {}
        new_timers = {t.timer_id: t.due_ms for t in after.pending_timers()}
        for timer_id, due in old_timers.items():
            if new_timers.get(timer_id) != due:
                batch.delete(_timer_key(due, timer_id))
        for timer_id, due in new_timers.items():
            if old_timers.get(timer_id) != due:
                batch.put(_timer_key(due, timer_id), saga_id)
        added = len(new_timers.keys() - old_timers.keys()) - len(old_timers.keys()
                                                                 - new_timers.keys())
        if added:
            counters[_PENDING_TIMERS] = counters.get(_PENDING_TIMERS, 0) + added
        # a new run (continue-as-new) starts a new history: what is held of the old one
        # goes, and an old run's entries in this same change are never written
        new_run = max((e.seq for e in change.entries if isinstance(e.event, ev.SagaContinued)),
                      default=0)
        if new_run:
            self._store.delete_between(batch, *run_history_keys(
                _ENTRY, after.saga_id, before.run_started_seq if before else 0, new_run))
        for entry in change.entries:
            if entry.seq >= new_run:
                batch.put(_ENTRY + saga_id + b"\x00" + b"%010d" % entry.seq,
                          orjson.dumps(entry.row()))
        if change.started_by is not None:
            batch.put(_STARTED_BY + saga_id, change.started_by.encode())
        batch.put(_STATE + saga_id, after.to_bytes())
        batch.put(_SUMMARY + saga_id, orjson.dumps(after.summary()))

    # ---- reading one saga ----------------------------------------------------------
    def state(self, saga_id: str) -> SagaState | None:
        raw = self._store.get(_STATE + saga_id.encode())
        if raw is None:
            return None
        try:
            return SagaState.from_json(orjson.loads(raw))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise StoreCorrupt(f"state of saga {saga_id} is unreadable: {exc}",
                               hint="delete the index folder; it is rebuilt by replay"
                               ) from exc

    def summary_json(self, saga_id: str) -> bytes | None:
        """The saga's summary as stored: JSON bytes, ready to send."""
        raw = self._store.get(_SUMMARY + saga_id.encode())
        return None if raw is None else bytes(raw)

    def summary(self, saga_id: str) -> dict[str, Any] | None:
        raw = self.summary_json(saga_id)
        return None if raw is None else dict(orjson.loads(raw))

    def started_by(self, saga_id: str) -> str | None:
        raw = self._store.get(_STARTED_BY + saga_id.encode())
        return None if raw is None else bytes(raw).decode()

    def history_json(self, saga_id: str) -> list[bytes]:
        """Every entry of the saga's current run (tests and tools; requests take
        ``history_page``)."""
        held = self.state(saga_id)
        prefix, start, _ = run_history_keys(_ENTRY, saga_id,
                                            held.run_started_seq if held else 0, 0)
        return [bytes(value) for _, value in self._store.scan(prefix, start)]

    def history_page(self, saga_id: str, cursor: str | None = None, *, limit: int = 1000,
                     max_bytes: int = HISTORY_PAGE_BYTES) -> RawPage:
        """Entries of the saga's current run in order: up to ``limit`` of them and about
        ``max_bytes`` (always at least one); the cursor is the seq to go on from."""
        if cursor is not None:
            if not cursor.isdigit() or len(cursor) > 10:
                raise ConfigError(f"cursor {cursor!r} is not one this server gave out",
                                  hint="pass the cursor of the Link rel=next, unchanged")
            prefix = _ENTRY + saga_id.encode() + b"\x00"
            start = prefix + b"%010d" % int(cursor)
        else:
            held = self.state(saga_id)
            prefix, start, _ = run_history_keys(_ENTRY, saga_id,
                                                held.run_started_seq if held else 0, 0)
        rows: list[bytes] = []
        size = 0
        for key, value in self._store.scan(prefix, start):
            if rows and (len(rows) >= limit or size + len(value) > max_bytes):
                return RawPage(rows, str(int(key[len(prefix):])))
            rows.append(bytes(value))
            size += len(value)
        return RawPage(rows, None)

    # ---- listing -------------------------------------------------------------------
    def page(self, query: ListQuery, *, scan_limit: int = SCAN_LIMIT) -> Page:
        if query.limit < 1:
            raise ConfigError(f"limit must be at least 1, got {query.limit}")
        if query.id_prefix:
            return self._list_by_prefix(query, scan_limit)
        prefix = _list_prefix(query.status, query.saga_type)
        start = prefix
        if query.started_before_ms is not None:  # strictly before: skip that very ms
            start = prefix + b"%016d" % (_NEVER - query.started_before_ms + 1)
        if query.cursor:
            start = max(start, _decode_cursor(query.cursor, prefix) + b"\x00")
        stop = None if query.started_after_ms is None \
            else prefix + b"%016d" % (_NEVER - query.started_after_ms) + b"\x01"
        # The index rows narrow by status and type; every other filter needs the
        # summary. Without one, every row read is taken, so no summary is read twice.
        plain = query == ListQuery(query.status, query.saga_type,
                                   started_after_ms=query.started_after_ms,
                                   started_before_ms=query.started_before_ms,
                                   limit=query.limit, cursor=query.cursor)

        def candidates() -> Iterator[tuple[bytes, dict[str, Any] | None]]:
            for key, _ in self._scan_from(start, prefix):
                if stop is not None and key >= stop:
                    return
                yield key, self.summary(key.rsplit(b"\x00", 1)[1].decode())

        return _page(candidates(), (lambda _: True) if plain else query.takes, query.limit,
                     prefix, scan_limit)

    def _list_by_prefix(self, query: ListQuery, scan_limit: int) -> Page:
        """Sagas whose id starts with the prefix, in id order (the ids are the keys)."""
        wanted = query.id_prefix or ""
        prefix = _SUMMARY + wanted.encode()
        start = prefix
        if query.cursor:
            start = max(start, _decode_cursor(query.cursor, _SUMMARY) + b"\x00")
        rows = ((key, dict(orjson.loads(value))) for key, value in self._scan_from(start, prefix))
        return _page(rows, query.takes, query.limit, _SUMMARY, scan_limit)

    def counts(self) -> dict[str, int]:
        return {s.value: self._count(_COUNT + s.value.encode()) for s in SagaStatus}

    def durations(self) -> dict[str, dict[str, int]]:
        """Per saga type, percentiles of the durations of ended sagas, in ms (within 2 %;
        the count and the longest exact)."""
        by_type: dict[str, dict[int, int]] = {}
        for key, value in self._store.scan(_HISTOGRAM):
            saga_type, bucket = key[len(_HISTOGRAM):].rsplit(b"\x00", 1)
            by_type.setdefault(saga_type.decode(), {})[int(bucket)] = \
                int(_COUNTER.unpack(value)[0])
        return {saga_type: percentiles(buckets, self._count(_LONGEST + saga_type.encode()))
                for saga_type, buckets in by_type.items()}

    def dead_letter_count(self) -> int:
        return self._count(_LETTERS)

    def timers(self, now_ms: int, limit: int = 100, *, scan_limit: int = SCAN_LIMIT
               ) -> dict[str, Any]:
        """The pending timers (a counter), the earliest ``limit`` of them, and how many are
        overdue: counted up to ``scan_limit`` (``overdue_capped`` says it stopped there;
        the timer service fires them, so many overdue means it is behind or down)."""
        first: list[dict[str, Any]] = []
        overdue = 0
        capped = False
        for key, saga_id in self._store.scan(_TIMER):
            due_raw, timer_id = key[len(_TIMER):].split(b"\x00", 1)
            due = int(due_raw)
            if len(first) < limit:
                first.append({"timer_id": timer_id.decode(), "saga_id": bytes(saga_id).decode(),
                              "due_ms": due})
            if due <= now_ms:
                if overdue == scan_limit:
                    capped = True
                    break
                overdue += 1
            elif len(first) >= limit:
                break
        return {"now_ms": now_ms, "pending": self._count(_PENDING_TIMERS), "overdue": overdue,
                "overdue_capped": capped,
                "next_due_ms": first[0]["due_ms"] if first else None, "timers": first}

    def dead_letters(self, reason: str | None = None) -> list[dict[str, Any]]:
        """Every dead letter as stored, bytes and all (tests and tools; requests take
        ``letters_page``)."""
        letters = [dict(orjson.loads(value)) for _, value in self._store.scan(_LETTER)]
        return [letter for letter in letters if reason is None or letter["reason"] == reason]

    def letters_page(self, reason: str | None = None, *, limit: int = 100,
                     cursor: str | None = None, scan_limit: int = SCAN_LIMIT) -> Page:
        """Dead letters as shown (a preview, no bytes), oldest first per partition, of one
        ``reason`` or all; bounded like ``page``."""
        start = _SHOWN if cursor is None else _decode_cursor(cursor, _SHOWN) + b"\x00"
        rows = ((key, dict(orjson.loads(value))) for key, value in self._scan_from(start,
                                                                                  _SHOWN))
        return _page(rows, lambda letter: reason is None or letter.get("reason") == reason,
                     limit, _SHOWN, scan_limit)

    def dead_letter(self, partition: int, offset: int) -> dict[str, Any] | None:
        """One letter as stored, with its bytes."""
        raw = self._store.get(_letter_key(partition, offset))
        return None if raw is None else dict(orjson.loads(raw))

    def shown_letter(self, partition: int, offset: int) -> dict[str, Any] | None:
        """One letter as shown: its preview, no bytes."""
        raw = self._store.get(_SHOWN + _letter_key(partition, offset)[len(_LETTER):])
        return None if raw is None else dict(orjson.loads(raw))

    # ---- positions -----------------------------------------------------------------
    def journal_offsets(self) -> dict[int, int]:
        return self._store.offsets()

    def dlq_offsets(self) -> dict[int, int]:
        return self._store.offsets(DLQ_STREAM)

    def _count(self, key: bytes) -> int:
        raw = self._store.get(key)
        return 0 if raw is None else int(_COUNTER.unpack(raw)[0])

    def _scan_from(self, start: bytes, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self._store.scan(prefix, start)


def _page(rows: Iterable[tuple[bytes, dict[str, Any] | None]],
          wanted: Callable[[dict[str, Any]], bool], limit: int, prefix: bytes,
          scan_limit: int) -> Page:
    """Up to ``limit`` rows ``wanted`` takes, in key order, reading at most ``scan_limit``
    rows; the cursor is the last key read, so the next page starts right after it."""
    found: list[dict[str, Any]] = []
    last: bytes | None = None
    for read, (key, row) in enumerate(rows):
        if read == scan_limit:
            return Page(found, _encode_cursor(last, prefix))
        if row is not None and wanted(row):
            if len(found) == limit:
                return Page(found, _encode_cursor(last, prefix))
            found.append(row)
        last = key
    return Page(found, None)


def _list_prefix(status: SagaStatus | None, saga_type: str | None) -> bytes:
    if status is not None and saga_type is not None:
        return _LIST + b"x" + saga_type.encode() + b"\x00" + status.value.encode() + b"\x00"
    if status is not None:
        return _LIST + b"s" + status.value.encode() + b"\x00"
    if saga_type is not None:
        return _LIST + b"t" + saga_type.encode() + b"\x00"
    return _LIST + b"a\x00"


def _list_keys(state: SagaState) -> set[bytes]:
    tail = b"%016d" % (_NEVER - state.started_at_ms) + b"\x00" + state.saga_id.encode()
    status = state.status
    keys = {_list_prefix(None, None) + tail, _list_prefix(None, state.saga_type) + tail}
    if status is not None:
        keys |= {_list_prefix(status, None) + tail, _list_prefix(status, state.saga_type) + tail}
    return keys


def _timer_key(due_ms: int, timer_id: str) -> bytes:
    return _TIMER + b"%016d" % max(0, due_ms) + b"\x00" + timer_id.encode()


def _letter_key(partition: int, offset: int) -> bytes:
    return _LETTER + b"%05d" % partition + b"\x00" + b"%020d" % offset


def _encode_cursor(key: bytes | None, prefix: bytes) -> str | None:
    if key is None:
        return None
    return base64.urlsafe_b64encode(key[len(prefix):]).decode()


def _decode_cursor(cursor: str, prefix: bytes) -> bytes:
    try:
        return prefix + base64.b64decode(cursor.encode(), altchars=b"-_", validate=True)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cursor {cursor!r} is not one this server gave out",
                          hint="pass the next_cursor of the previous page, unchanged"
                          ) from exc
