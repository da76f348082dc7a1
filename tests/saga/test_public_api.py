"""The public API is what ``saga.__all__`` names; removing a name breaks users."""

from __future__ import annotations

import saga

# Add to this list when the API grows; a name leaves it only with a major version.
PUBLIC_NAMES = {
    "AccessDenied",
    "BlockingSagaClient",
    "BlockingSagaHandle",
    "BusinessError",
    "CodecError",
    "ConfigError",
    "KafkaUnavailable",
    "NonDeterminismError",
    "RetryPolicy",
    "SagaCancelled",
    "SagaClient",
    "SagaCompensated",
    "SagaContext",
    "SagaDidNotComplete",
    "SagaError",
    "SagaFailed",
    "SagaHandle",
    "SagaInfo",
    "SagaNotFound",
    "SagaPage",
    "SagaStatus",
    "SagaStillRunning",
    "Settings",
    "StepFailed",
    "TopicMismatch",
    "UnknownSagaType",
    "hours",
    "minutes",
    "seconds",
    "workflow",
}


def test_no_public_name_disappears() -> None:
    missing = PUBLIC_NAMES - set(saga.__all__)
    assert not missing, f"public names removed from saga.__all__: {sorted(missing)}"


def test_every_exported_name_exists_and_is_listed() -> None:
    for name in saga.__all__:
        assert getattr(saga, name) is not None, name
    assert set(saga.__all__) == PUBLIC_NAMES, "a new public name must be added to this test"


SERVICE_NAMES = {"BusinessError", "Command", "CommandKind", "ReplyOutcome", "Service",
                 "ServiceState", "StagedState", "StateView", "read_state"}


def test_the_service_sdk_keeps_its_names() -> None:
    import saga.service

    assert set(saga.service.__all__) == SERVICE_NAMES
    for name in saga.service.__all__:
        assert getattr(saga.service, name) is not None, name


TESTING_NAMES = {"DeadLetter", "History", "Reply", "SagaParkedError", "SagaStalled",
                 "SagaTestEnv", "SagaTestHandle", "ScheduledTimer", "SentCommand",
                 "UnhandledCommand", "assert_replays", "load_history", "load_journal",
                 "replay"}


def test_the_testing_api_keeps_its_names() -> None:
    import saga.testing

    assert set(saga.testing.__all__) == TESTING_NAMES
    for name in saga.testing.__all__:
        assert getattr(saga.testing, name) is not None, name
    assert callable(saga.testing.replay)  # the function, not a module of that name


def test_every_error_descends_from_the_one_root() -> None:
    from saga import errors

    classes = [v for v in vars(errors).values()
               if isinstance(v, type) and issubclass(v, saga.SagaError)]
    others = [v for v in vars(errors).values() if isinstance(v, type)
              and issubclass(v, Exception) and not issubclass(v, saga.SagaError)]
    assert others == []
    assert len(classes) > 5
    assert all(issubclass(c, saga.SagaError) for c in classes)
    assert all(isinstance(c.retryable, bool) for c in classes)
