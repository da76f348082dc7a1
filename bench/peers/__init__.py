"""`make bench-peers`: the order saga on kafka-saga and its peers (see __main__.py)."""
