"""Where an inbox record goes before anything is decided (no Kafka needed)."""

from __future__ import annotations

from saga.codec.origin import OriginKeys, new_origin_key
from saga.coordinator.ownership import Ownership
from saga.coordinator.router import Decide, InputRouter, SendOn, SetAside
from saga.engine.ids import MAX_SAGA_ID_BYTES
from saga.engine.inputs import CommandReply, DeliverSignal, ReplyOutcome, StartSaga
from saga.kafka import headers
from saga.kafka.partitioner import partition_of
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.telemetry import tracing

PARTITIONS = 12
TRACEPARENT = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


def _router() -> InputRouter:
    return InputRouter(RecordCodec(), PARTITIONS)


def _no_headers() -> None:
    raise AssertionError("the headers were read for an input that does not need them")


def test_an_input_in_its_own_partition_under_its_own_key_is_decided() -> None:
    router = _router()
    value = router.codec.encode_inbox("o-1", DeliverSignal("go", {"n": 1}))
    route = router.route(b"o-1", value, partition_of("o-1", PARTITIONS), _no_headers)
    assert route == Decide("o-1", DeliverSignal("go", {"n": 1}), "signal")


def test_a_start_keeps_its_starters_trace_context_from_the_header() -> None:
    router = _router()
    value = router.codec.encode_inbox("o-1", StartSaga("order", {}))
    route = router.route(b"o-1", value, partition_of("o-1", PARTITIONS),
                         lambda: [("traceparent", TRACEPARENT.encode())])
    assert isinstance(route, Decide)
    assert isinstance(route.value, StartSaga)
    assert route.value.trace == TRACEPARENT
    assert route.kind == "start"


def test_a_childs_start_reads_its_headers_once_for_its_tag_and_its_trace() -> None:
    keys = OriginKeys.parse(new_origin_key())
    router = InputRouter(RecordCodec(), PARTITIONS, origin=keys)
    value = router.codec.encode_inbox("c-1", StartSaga("order", {}, parent="p-1",
                                                       parent_step=2))
    found = [(headers.ORIGIN_MAC, keys.tag_own("saga.inbox", value)),
             ("traceparent", TRACEPARENT.encode())]
    reads: list[int] = []

    def read() -> list[tuple[str, bytes | None]]:
        reads.append(1)
        return found

    route = router.route(b"c-1", value, partition_of("c-1", PARTITIONS), read)
    assert isinstance(route, Decide)
    assert isinstance(route.value, StartSaga)
    assert route.value.trace == TRACEPARENT
    assert len(reads) == 1


def test_garbage_and_tombstones_are_set_aside_as_undecodable() -> None:
    router = _router()
    for value, why in ((b"\x00garbage", "NotFramed: 8 bytes without the Avro"),
                       (None, "CodecError: an inbox record without a value")):
        route = router.route(b"o-1", value, 0, _no_headers)
        assert isinstance(route, SetAside)
        assert route.reason is DeadLetterReason.UNDECODABLE
        assert route.kind is None
        assert route.detail.startswith(why)


def test_a_key_that_is_not_the_saga_id_is_set_aside_and_still_counted_by_kind() -> None:
    router = _router()
    reply = CommandReply("o-1:0:1", "payments", ReplyOutcome.OK, {}, "")
    value = router.codec.encode_inbox("o-1", reply)
    route = router.route(b"o-2", value, partition_of("o-1", PARTITIONS), _no_headers)
    assert route == SetAside(DeadLetterReason.KEY_MISMATCH,
                             "record key b'o-2' is not the saga id 'o-1'", "reply")


def test_an_input_in_a_foreign_partition_or_without_a_key_is_sent_home() -> None:
    router = _router()
    home = partition_of("o-1", PARTITIONS)
    value = router.codec.encode_inbox("o-1", DeliverSignal("go", {}))
    assert router.route(b"o-1", value, (home + 1) % PARTITIONS, _no_headers) \
        == SendOn("o-1", home, "signal")
    assert router.route(None, value, home, _no_headers) == SendOn("o-1", home, "signal")


def test_the_decision_span_is_one_shared_no_op_when_tracing_is_off() -> None:
    assert not tracing.enabled()

    def never() -> str:
        raise AssertionError("the parent was derived with tracing off")

    first = tracing.decision("o-1", "start", 0, 0, never)
    assert first is tracing.decision("o-2", "reply", 1, 9, never)
    with first as traceparent:
        assert traceparent is None


def test_every_transaction_commits_the_positions_of_all_owned_partitions() -> None:
    ownership = Ownership()
    ownership.assigned([(0, 10), (1, -1001), (2, 7)], [0, 1, 2])
    assert ownership.changed
    assert ownership.to_commit({1: 5}) == {0: 10, 1: 5, 2: 7}
    ownership.committed({1: 5})
    ownership.revoked([2])
    assert ownership.owned == {0, 1}
    assert ownership.to_commit({}) == {0: 10, 1: 5}


def test_a_saga_id_over_the_limit_is_set_aside_never_sent_on() -> None:
    """Its journal keys, command and timer ids would all carry it, and sending it home
    would add it as a key: a 520 KB id made a record Kafka refuses."""
    router = _router()
    for saga_id in ("x" * (MAX_SAGA_ID_BYTES + 1), "x" * 520_000, "é" * 1025):
        value = router.codec.encode_inbox(saga_id, DeliverSignal("go", {}))
        home = partition_of(saga_id, PARTITIONS)
        for key in (saga_id.encode(), None):
            route = router.route(key, value, home, _no_headers)
            assert isinstance(route, SetAside)
            assert route.reason is DeadLetterReason.SAGA_ID_TOO_LONG
            assert len(route.detail) < 800
            assert f"over the {MAX_SAGA_ID_BYTES}-byte limit" in route.detail
    at_limit = "x" * MAX_SAGA_ID_BYTES
    value = router.codec.encode_inbox(at_limit, DeliverSignal("go", {}))
    assert isinstance(router.route(at_limit.encode(), value,
                                   partition_of(at_limit, PARTITIONS), _no_headers), Decide)


def test_a_huge_key_is_shown_by_its_start_and_size() -> None:
    router = _router()
    value = router.codec.encode_inbox("o-1", DeliverSignal("go", {}))
    route = router.route(b"k" * 520_000, value, 0, _no_headers)
    assert isinstance(route, SetAside)
    assert route.reason is DeadLetterReason.KEY_MISMATCH
    assert "(520000 bytes)" in route.detail
    assert len(route.detail) < 400
