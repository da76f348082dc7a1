"""Installed as saga._data.topics: see saga/_data/__init__.py."""
