"""The services the order saga calls. Each runs as its own process:
`saga service run payments` (and inventory, shipping, notifications, ops)."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from saga.config import Settings
from services.sdk import BusinessError, Command, Service, ServiceStore, read_store

payments = Service("payments")
inventory = Service("inventory")
shipping = Service("shipping")
notifications = Service("notifications")
ops = Service("ops")

SERVICES = {s.name: s for s in (payments, inventory, shipping, notifications, ops)}


# ---- payments: a ledger of charges and refunds -----------------------------------------
@payments.handler("charge")
async def charge(cmd: Command) -> dict[str, Any]:
    amount = cmd.body.get("amount_cents")
    if not isinstance(amount, int) or amount <= 0:
        raise BusinessError("invalid_amount", f"amount_cents={amount!r}")
    charge_id = f"ch-{_short(cmd.command_id)}"
    cmd.state.put(f"ledger/{cmd.command_id}", {
        "type": "charge", "charge_id": charge_id, "order_id": cmd.body.get("id"),
        "saga_id": cmd.saga_id, "amount_cents": amount})
    return {"charge_id": charge_id, "amount_cents": amount}


@payments.handler("refund")
async def refund(cmd: Command) -> dict[str, Any]:
    charged = cmd.state.get(f"ledger/{cmd.body['command_id']}")
    if charged is None or charged["type"] != "charge":
        raise BusinessError("no_such_charge", cmd.body["command_id"])
    cmd.state.put(f"ledger/{cmd.command_id}", {
        "type": "refund", "charge_id": charged["charge_id"], "order_id": charged["order_id"],
        "saga_id": cmd.saga_id, "amount_cents": charged["amount_cents"]})
    return {"refunded_cents": charged["amount_cents"], "charge_id": charged["charge_id"]}


def ledger_report(store: ServiceStore) -> dict[str, Any]:
    entries = [entry for _, entry in store.scan("ledger/")]
    charges = [e for e in entries if e["type"] == "charge"]
    refunds = [e for e in entries if e["type"] == "refund"]
    return {"charges": len(charges), "refunds": len(refunds),
            "charged_cents": sum(e["amount_cents"] for e in charges),
            "refunded_cents": sum(e["amount_cents"] for e in refunds),
            "entries": entries}


# ---- inventory: stock levels and reservations ------------------------------------------
def load_stock(path: Path) -> None:
    """Seed stock levels from a JSON file (sku -> quantity).

    Only skus the store does not know yet are seeded: a restarted service keeps the
    levels its reservations left, rather than resetting them.
    """
    stock = orjson.loads(path.read_bytes())

    def seed(store: ServiceStore) -> None:
        store.commit({f"stock/{sku}": int(qty) for sku, qty in stock.items()
                      if store.get(f"stock/{sku}") is None})

    inventory.on_start.append(seed)


@inventory.handler("reserve")
async def reserve(cmd: Command) -> dict[str, Any]:
    items = cmd.body.get("items") or []
    for item in items:
        have = cmd.state.get(f"stock/{item['sku']}", 0)
        if have < item["qty"]:
            raise BusinessError("out_of_stock", f"{item['sku']}: {have} < {item['qty']}")
    for item in items:
        key = f"stock/{item['sku']}"
        cmd.state.put(key, cmd.state.get(key, 0) - item["qty"])
    reservation = f"res-{_short(cmd.command_id)}"
    cmd.state.put(f"reservation/{cmd.command_id}", {"id": reservation, "items": items})
    return {"reservation": reservation}


@inventory.handler("release")
async def release(cmd: Command) -> dict[str, Any]:
    held = cmd.state.get(f"reservation/{cmd.body['command_id']}")
    if held is None:
        return {"released": False}  # nothing was reserved: releasing is a no-op
    for item in held["items"]:
        key = f"stock/{item['sku']}"
        cmd.state.put(key, cmd.state.get(key, 0) + item["qty"])
    cmd.state.put(f"reservation/{cmd.body['command_id']}", None)
    return {"released": True}


def stock_report(store: ServiceStore) -> dict[str, Any]:
    return {"stock": {key.removeprefix("stock/"): qty for key, qty in store.scan("stock/")}}


# ---- shipping, notifications, ops ------------------------------------------------------
@shipping.handler("schedule")
async def schedule(cmd: Command) -> dict[str, Any]:
    tracking = f"trk-{_short(cmd.command_id)}"
    cmd.state.put(f"shipment/{cmd.saga_id}", {"tracking": tracking})
    return {"id": tracking}


@notifications.handler("send_confirmation")
async def send_confirmation(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"sent/{cmd.command_id}", cmd.body)
    return {"sent": True}


@ops.handler("alert")
async def alert(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"alert/{cmd.command_id}", cmd.body)
    return {"alerted": True}


def count_report(prefix: str) -> Any:
    def report(store: ServiceStore) -> dict[str, Any]:
        return {"records": sum(1 for _ in store.scan(prefix))}

    return report


REPORTS = {"payments": ledger_report, "inventory": stock_report,
           "shipping": count_report("shipment/"), "notifications": count_report("sent/"),
           "ops": count_report("alert/")}


def read_report(settings: Settings, service: str) -> dict[str, Any]:
    """A service's report from its store, opened read-only (it may be running)."""
    store = read_store(settings, service)
    try:
        report: dict[str, Any] = REPORTS[service](store)
        return report
    finally:
        store.close()


def alerted_orders(settings: Settings) -> Counter[str]:
    """How many alerts the ops service sent about each order."""
    store = read_store(settings, "ops")
    try:
        return Counter(alert["order_id"] for _, alert in store.scan("alert/"))
    finally:
        store.close()


def _short(command_id: str) -> str:
    return hashlib.sha256(command_id.encode()).hexdigest()[:12]
