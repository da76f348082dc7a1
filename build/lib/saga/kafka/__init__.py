"""The Kafka edge: the embedded broker, topic administration and client settings.

Nothing in saga.engine imports from here; the coordinator wires the two together.
"""
