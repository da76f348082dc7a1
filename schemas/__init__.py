"""Installed as saga._data.schemas: see saga/_data/__init__.py."""
