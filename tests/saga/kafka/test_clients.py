"""The client helpers that need no broker: deadlines on librdkafka calls, which errors
count as a broker passing through a restart, and riding them out."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

from saga.errors import ClientStuck, KafkaUnavailable
from saga.kafka.clients import assign, call_with_deadline, is_transient, while_kafka_recovers


def test_a_call_within_its_deadline_returns_its_value() -> None:
    assert call_with_deadline(lambda: 42, 5, "answer") == 42


def test_a_call_that_raises_raises_in_the_caller() -> None:
    def broken() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        call_with_deadline(broken, 5, "broken")


def test_a_call_that_never_returns_is_given_up_on_time() -> None:
    release = threading.Event()  # never set while the caller waits: the call hangs
    with pytest.raises(ClientStuck, match="wedged did not return within 0s"):
        call_with_deadline(release.wait, 0.2, "wedged")
    stuck = [t for t in threading.enumerate() if t.name == "deadline:wedged"]
    assert stuck
    assert all(t.daemon for t in stuck)  # a call that never returns cannot hold the exit
    release.set()


@pytest.mark.parametrize("code", [KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN,
                                  KafkaError.NOT_LEADER_FOR_PARTITION,
                                  KafkaError.COORDINATOR_LOAD_IN_PROGRESS])
def test_a_restarting_broker_is_transient(code: int) -> None:
    assert is_transient(KafkaError(code))


def test_a_retriable_error_is_transient() -> None:
    assert is_transient(KafkaError(KafkaError.REQUEST_TIMED_OUT, retriable=True))


@pytest.mark.parametrize("error", [KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART),
                                   KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED),
                                   KafkaError(KafkaError._TRANSPORT, fatal=True)])
def test_a_missing_topic_or_a_fatal_error_is_not(error: KafkaError) -> None:
    assert not is_transient(error)


def test_a_step_is_tried_again_while_kafka_answers_with_transient_errors(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As `saga acl user` met in CI: the request lost with the bootstrap connection
    librdkafka replaced ("Broker handle destroyed"); the same step then succeeds."""
    monkeypatch.setattr("saga.kafka.clients.time.sleep", lambda seconds: None)
    lost = KafkaException(KafkaError(KafkaError._DESTROY_BROKER))
    answers: list[Exception | str] = [lost, KafkaUnavailable("no broker yet"), "set"]
    said: list[str] = []

    def step() -> str:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert while_kafka_recovers(step, "setting a credential", wait_s=60,
                                say=said.append) == "set"
    assert len(said) == 2
    assert all(line.startswith("setting a credential: Kafka is not ready") for line in said)


def test_a_step_refused_for_good_is_not_tried_again() -> None:
    refused = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    calls: list[int] = []

    def step() -> None:
        calls.append(1)
        raise refused

    with pytest.raises(KafkaException):
        while_kafka_recovers(step, "creating the ACLs", wait_s=60, say=print)
    assert calls == [1]


class _RecordingReader:
    """A consumer that notes the calls an assignment makes, in order."""

    def __init__(self, metadata_fails: bool = False) -> None:
        self.calls: list[tuple[str, object]] = []
        self._metadata_fails = metadata_fails

    def list_topics(self, topic: str, timeout: float) -> None:
        self.calls.append(("list_topics", topic))
        if self._metadata_fails:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "no broker yet"))

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("assign", [(tp.topic, tp.partition) for tp in partitions]))


def test_an_assignment_asks_for_its_topics_leaders_first() -> None:
    # Assigned before its leader is known, a partition read from its start waits out
    # librdkafka's 500 ms offset-query timer: every catch-up and rebuild paid it.
    reader = _RecordingReader()
    assign(reader, [TopicPartition("b", 0, OFFSET_BEGINNING),  # type: ignore[arg-type]
                    TopicPartition("a", 1, 5), TopicPartition("b", 1, OFFSET_BEGINNING)])
    assert reader.calls == [("list_topics", "a"), ("list_topics", "b"),
                            ("assign", [("b", 0), ("a", 1), ("b", 1)])]


def test_an_assignment_is_made_when_the_metadata_does_not_come() -> None:
    reader = _RecordingReader(metadata_fails=True)
    assign(reader, [TopicPartition("a", 0, OFFSET_BEGINNING)])  # type: ignore[arg-type]
    assert reader.calls[-1] == ("assign", [("a", 0)])
