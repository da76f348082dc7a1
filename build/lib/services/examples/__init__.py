"""The example order saga and the services it calls (payments, inventory, shipping,
notifications, ops)."""
