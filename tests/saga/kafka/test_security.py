"""Kafka security settings: validated with a hint, mapped alike onto both client
libraries, and the secrets never shown."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from saga.config import Settings
from saga.errors import ConfigError
from saga.kafka import security

SCRAM = {"SAGA_BOOTSTRAP_SERVERS": "broker:9093", "SAGA_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
         "SAGA_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SAGA_KAFKA_SASL_USERNAME": "coordinator",
         "SAGA_KAFKA_SASL_PASSWORD": "s3cr3t-pa55"}


def test_plaintext_is_the_default_and_adds_nothing_but_the_protocol() -> None:
    kafka = Settings(bootstrap_servers="h:1").kafka
    assert security.librdkafka(kafka) == {"bootstrap.servers": "h:1",
                                          "security.protocol": "PLAINTEXT"}
    assert security.aiokafka(kafka) == {"bootstrap_servers": "h:1",
                                        "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_maps_onto_both_libraries_alike() -> None:
    kafka = Settings.from_env(SCRAM).kafka
    rd = security.librdkafka(kafka)
    aio = security.aiokafka(kafka)
    assert rd["security.protocol"] == aio["security_protocol"] == "SASL_SSL"
    assert rd["sasl.mechanism"] == aio["sasl_mechanism"] == "SCRAM-SHA-512"
    assert rd["sasl.username"] == aio["sasl_plain_username"] == "coordinator"
    assert rd["sasl.password"] == aio["sasl_plain_password"] == "s3cr3t-pa55"
    assert isinstance(aio["ssl_context"], ssl.SSLContext)
    assert aio["ssl_context"].check_hostname


def test_the_secret_is_in_no_repr_str_or_error() -> None:
    settings = Settings.from_env(SCRAM)
    for shown in (repr(settings), str(settings), repr(settings.kafka),
                  str(settings.kafka_sasl_password)):
        assert "s3cr3t-pa55" not in shown
        assert "***" in shown
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**SCRAM, "SAGA_KAFKA_SASL_MECHANISM": "GSSAPI"})
    assert "s3cr3t-pa55" not in str(caught.value)
    assert security.redact("auth failed for s3cr3t-pa55", settings.kafka.security) == \
        "auth failed for ***"


@pytest.mark.parametrize(("changes", "hint"), [
    ({"SAGA_KAFKA_SECURITY_PROTOCOL": "TLS"}, "SAGA_KAFKA_SECURITY_PROTOCOL"),
    ({"SAGA_KAFKA_SASL_MECHANISM": "GSSAPI"}, "SAGA_KAFKA_SASL_MECHANISM"),
    ({"SAGA_KAFKA_SASL_PASSWORD": ""}, "SAGA_KAFKA_SASL_PASSWORD"),
    ({"SAGA_KAFKA_SECURITY_PROTOCOL": "SSL"}, "SAGA_KAFKA_SECURITY_PROTOCOL=SASL_SSL"),
    ({"SAGA_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"}, "SAGA_KAFKA_SSL_CA_FILE"),
    ({"SAGA_KAFKA_SSL_CERT_FILE": __file__}, "SAGA_KAFKA_SSL_KEY_FILE"),
])
def test_inconsistent_settings_fail_with_a_hint(changes: dict[str, str], hint: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**SCRAM, **changes})
    assert hint in (caught.value.hint or "")


def test_mtls_files_reach_both_libraries(tmp_path: Path) -> None:
    from saga.dev.certificates import issue_certificates

    files = issue_certificates(tmp_path, clients=["service-payments"])
    settings = Settings.from_env({
        "SAGA_BOOTSTRAP_SERVERS": "localhost:9093", "SAGA_KAFKA_SECURITY_PROTOCOL": "SSL",
        "SAGA_KAFKA_SSL_CA_FILE": str(files.ca),
        "SAGA_KAFKA_SSL_CERT_FILE": str(files.client_cert("service-payments")),
        "SAGA_KAFKA_SSL_KEY_FILE": str(files.client_key("service-payments"))})
    rd = security.librdkafka(settings.kafka)
    assert rd["ssl.ca.location"] == str(files.ca)
    assert rd["ssl.certificate.location"] == str(files.client_cert("service-payments"))
    context = security.aiokafka(settings.kafka)["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED
