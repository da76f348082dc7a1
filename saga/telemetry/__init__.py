"""What kafka-saga tells operators while it runs: structured logs, Prometheus metrics and
OpenTelemetry traces, each off or cheap unless asked for."""
