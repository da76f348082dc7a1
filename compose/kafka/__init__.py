"""Installed as saga._data.kafka: see saga/_data/__init__.py."""
