"""The one place that maps KafkaSecurity onto the two client libraries: librdkafka's
configuration (confluent-kafka: the coordinator, the CLI, the server, the tools) and
aiokafka's keyword arguments (the services). Both must say the same thing, or a service
would connect where the coordinator cannot (or the other way round).

Secrets leave their Secret wrapper only here, into the client's own configuration, and
``redact`` takes them out of any text a Kafka client hands back (librdkafka quotes its
configuration in some errors)."""

from __future__ import annotations

import ssl
from typing import Any

from saga.config import KafkaConnection, KafkaSecurity


def librdkafka(connection: KafkaConnection) -> dict[str, Any]:
    """bootstrap.servers and the security properties of a confluent-kafka client."""
    security = connection.security
    config: dict[str, Any] = {"bootstrap.servers": connection.bootstrap_servers,
                              "security.protocol": security.protocol}
    if security.uses_sasl:
        config.update({"sasl.mechanism": security.sasl_mechanism,
                       "sasl.username": security.sasl_username,
                       "sasl.password": security.sasl_password.reveal()})
    if security.uses_tls:
        if security.ssl_ca_file:
            config["ssl.ca.location"] = security.ssl_ca_file
        if security.ssl_cert_file:
            config["ssl.certificate.location"] = security.ssl_cert_file
            config["ssl.key.location"] = security.ssl_key_file
        if security.ssl_key_password:
            config["ssl.key.password"] = security.ssl_key_password.reveal()
        # Hostname verification stays on (librdkafka's default, "https").
    return config


def aiokafka(connection: KafkaConnection) -> dict[str, Any]:
    """bootstrap_servers and the security keyword arguments of an aiokafka client."""
    security = connection.security
    kwargs: dict[str, Any] = {"bootstrap_servers": connection.bootstrap_servers,
                              "security_protocol": security.protocol}
    if security.uses_sasl:
        kwargs.update({"sasl_mechanism": security.sasl_mechanism,
                       "sasl_plain_username": security.sasl_username,
                       "sasl_plain_password": security.sasl_password.reveal()})
    if security.uses_tls:
        kwargs["ssl_context"] = ssl_context(security)
    return kwargs


def ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client TLS context that verifies the brokers' certificates and host names."""
    context = ssl.create_default_context(cafile=security.ssl_ca_file or None)
    if security.ssl_cert_file:
        context.load_cert_chain(security.ssl_cert_file, security.ssl_key_file,
                                password=security.ssl_key_password.reveal() or None)
    return context


def redact(text: str, security: KafkaSecurity) -> str:
    """``text`` with the connection's secrets replaced by ***."""
    for secret in (security.sasl_password, security.ssl_key_password):
        if secret:
            text = text.replace(secret.reveal(), "***")
    return text
