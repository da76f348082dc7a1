"""The workflow engine: pure Python, no Kafka, no RocksDB.

It turns (saga state, input) into journal entries (`decider.Decider.decide`), replays
workflow functions against recorded state (`executor`, behind the `runtime` protocol the
workflow API talks to), and folds entries into state (`state.fold`). The coordinator,
the stores and the CLI sit around it.
"""
