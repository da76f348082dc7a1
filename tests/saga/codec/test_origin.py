"""Origin tags: a reply counts only with its service's tag, a fired timer or a child's
start or end only with the coordinator's (no Kafka needed; test_origin_on_kafka.py does
it on a broker)."""

from __future__ import annotations

import base64
from functools import partial

import pytest

from saga.codec.origin import OriginKeys, encoded_service_key, new_origin_key
from saga.config import Settings
from saga.coordinator.outbox import Outbox, Topics
from saga.coordinator.router import Decide, InputRouter, SetAside
from saga.engine.inputs import (
    ChildFinished,
    CommandReply,
    DeliverSignal,
    FireTimer,
    ReplyOutcome,
    StartSaga,
)
from saga.errors import ConfigError
from saga.kafka import headers
from saga.kafka.partitioner import partition_of
from saga.kafka.records import DeadLetterReason, RecordCodec
from saga.store.timer_index import PendingTimer

MASTER = new_origin_key()
INBOX = "saga.inbox"
PARTITIONS = 6
HOME = partition_of("o-1", PARTITIONS)


def _router(keys: OriginKeys) -> InputRouter:
    return InputRouter(RecordCodec(), PARTITIONS, topic=INBOX, origin=keys)


def _reply(service: str) -> bytes:
    return RecordCodec().encode_inbox("o-1", CommandReply(
        "o-1:0:1", service, ReplyOutcome.OK, {"charge_id": "ch-1"}, ""))


def _mac_headers(mac: bytes | None) -> list[tuple[str, bytes | None]]:
    return [] if mac is None else [(headers.ORIGIN_MAC, mac)]


def test_a_service_given_only_its_reply_key_tags_what_the_coordinator_checks() -> None:
    coordinator = OriginKeys.parse(MASTER)
    payments = OriginKeys.parse(reply_key=encoded_service_key(MASTER, "payments"))
    value = _reply("payments")
    mac = payments.tag_reply("payments", INBOX, value)
    route = _router(coordinator).route(b"o-1", value, HOME, lambda: _mac_headers(mac))
    assert isinstance(route, Decide)
    assert isinstance(route.value, CommandReply)


@pytest.mark.parametrize("writer", ["client", "inventory", "payments-elsewhere"])
def test_a_reply_without_the_named_services_tag_is_set_aside(writer: str) -> None:
    coordinator = OriginKeys.parse(MASTER)
    value = _reply("payments")
    if writer == "client":  # no key at all
        mac = None
    elif writer == "inventory":  # another service, naming payments, with its own key
        mac = OriginKeys.parse(reply_key=encoded_service_key(MASTER, "inventory")) \
            .tag_reply("inventory", INBOX, value)
    else:  # payments' real key, but a tag made for another topic (a moved record)
        mac = OriginKeys.parse(MASTER).tag_reply("payments", "other.inbox", value)
    route = _router(coordinator).route(b"o-1", value, HOME, lambda: _mac_headers(mac))
    assert isinstance(route, SetAside)
    assert route.reason is DeadLetterReason.UNPROVEN_ORIGIN
    assert "naming service 'payments'" in route.detail


def test_a_tag_does_not_survive_a_changed_value() -> None:
    coordinator = OriginKeys.parse(MASTER)
    value = _reply("payments")
    mac = coordinator.tag_reply("payments", INBOX, value)
    forged = RecordCodec().encode_inbox("o-1", CommandReply(
        "o-1:0:1", "payments", ReplyOutcome.BUSINESS_ERROR, None, "card_declined"))
    route = _router(coordinator).route(b"o-1", forged, HOME, lambda: _mac_headers(mac))
    assert isinstance(route, SetAside)


@pytest.mark.parametrize("own", [FireTimer("o-1:t:1", 0),
                                 ChildFinished("o-1:c:1", "COMPLETED", {"ok": 1}, ""),
                                 StartSaga("order", {}, parent="p-1", parent_step=2)])
def test_what_only_the_coordinator_sends_needs_its_tag(own: object) -> None:
    coordinator = OriginKeys.parse(MASTER)
    value = RecordCodec().encode_inbox("o-1", own)  # type: ignore[arg-type]
    router = _router(coordinator)
    assert isinstance(router.route(b"o-1", value, HOME, lambda: []), SetAside)
    tagged = coordinator.tag_own(INBOX, value)
    assert isinstance(router.route(b"o-1", value, HOME, lambda: _mac_headers(tagged)), Decide)
    # a service's key cannot make the coordinator's tag
    service_tag = coordinator.tag_reply("payments", INBOX, value)
    assert isinstance(router.route(b"o-1", value, HOME, lambda: _mac_headers(service_tag)),
                      SetAside)


@pytest.mark.parametrize("reply_first", [True, False])
def test_the_coordinators_key_is_not_that_of_a_service_named_empty(reply_first: bool) -> None:
    # Both were cached under "": whichever was asked for first answered for both, so a
    # reply naming service "" (any inbox writer may send one) made the coordinator
    # refuse the timers it had tagged itself.
    keys = OriginKeys.parse(MASTER)
    router = _router(keys)
    untouched = OriginKeys.parse(MASTER)
    reply, timer = _reply(""), RecordCodec().encode_inbox("o-1", FireTimer("o-1:t:1", 0))
    reply_mac, timer_mac = untouched.tag_own(INBOX, reply), untouched.tag_own(INBOX, timer)
    records = [(reply, reply_mac, SetAside), (timer, timer_mac, Decide)]
    for value, mac, taken in records if reply_first else records[::-1]:
        assert isinstance(router.route(b"o-1", value, HOME, partial(_mac_headers, mac)), taken)
    assert keys.service("") != keys.coordinator() == untouched.coordinator()


def test_what_any_client_may_send_needs_no_tag() -> None:
    router = _router(OriginKeys.parse(MASTER))
    for value in (RecordCodec().encode_inbox("o-1", StartSaga("order", {})),
                  RecordCodec().encode_inbox("o-1", DeliverSignal("go", {}))):
        assert isinstance(router.route(b"o-1", value, HOME, lambda: []), Decide)


def test_without_an_origin_key_nothing_is_checked_or_tagged() -> None:
    assert not OriginKeys().checks
    assert OriginKeys().tag_own(INBOX, b"x") is None
    route = _router(OriginKeys()).route(b"o-1", _reply("payments"), HOME, lambda: [])
    assert isinstance(route, Decide)


def test_the_outbox_tags_the_timers_it_fires() -> None:
    keys = OriginKeys.parse(MASTER)
    outbox = Outbox(Topics.of(Settings()), RecordCodec(), "coordinator", PARTITIONS, keys)
    outbox.fired(PendingTimer(HOME, "o-1:t:1", "o-1", 5))
    record = outbox.records[0]
    assert record.value is not None
    mac = dict(record.headers)[headers.ORIGIN_MAC]
    assert isinstance(mac, bytes)
    assert keys.is_own(INBOX, record.value, mac)


def test_malformed_keys_are_config_errors_with_a_hint() -> None:
    with pytest.raises(ConfigError, match="SAGA_ORIGIN_KEY is not 32 bytes") as caught:
        OriginKeys.parse("c2hvcnQ=")
    assert "saga keys origin" in (caught.value.hint or "")
    with pytest.raises(ConfigError, match="SAGA_REPLY_KEY"):
        Settings.from_env({"SAGA_REPLY_KEY": base64.b64encode(b"x" * 31).decode()})
    assert "***" in repr(Settings.from_env({"SAGA_ORIGIN_KEY": MASTER}).origin_key)
