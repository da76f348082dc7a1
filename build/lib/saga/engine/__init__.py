"""The workflow engine: pure Python, no Kafka, no RocksDB.

It turns (saga state, input) into journal entries (`decider.Engine.decide`), replays
workflow functions against recorded state (`executor`), and folds entries into state
(`state.fold`). The Kafka coordinator, the projection and the CLI sit around it.
"""
