"""Local state: one RocksDB helper (rocksdb.py) under three stores, each a cache or
companion of Kafka topics, with in-memory twins for tests of the code above them."""
