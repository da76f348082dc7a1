"""The services SDK (aiokafka) and the example services of the order saga."""
