"""The services the order saga calls. Each runs as its own process:
`saga service run payments` (and inventory, shipping, notifications, ops)."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson

from saga.config import Settings
from saga.service import BusinessError, Command, Service, StateView, read_state

payments = Service("payments")
inventory = Service("inventory")
shipping = Service("shipping")
notifications = Service("notifications")
ops = Service("ops")

SERVICES = {s.name: s for s in (payments, inventory, shipping, notifications, ops)}


# ---- payments: a ledger of charges and refunds -----------------------------------------
# The ledger stands for a payment provider that deduplicates on the idempotency key, the
# way Stripe's Idempotency-Key does: one entry per step, whichever attempt made it.
@payments.handler("charge")
async def charge(cmd: Command) -> dict[str, Any]:
    amount = cmd.body.get("amount_cents")
    if not isinstance(amount, int) or amount <= 0:
        raise BusinessError("invalid_amount", f"amount_cents={amount!r}")
    entry = f"ledger/{cmd.idempotency_key}"
    charged = cmd.state.get(entry)
    if charged is None:  # the provider has not seen this key: charge for real
        charged = {"type": "charge", "charge_id": f"ch-{uuid.uuid4().hex[:12]}",
                   "order_id": cmd.body.get("id"), "saga_id": cmd.saga_id,
                   "amount_cents": amount, "command_id": cmd.command_id}
        cmd.state.put(entry, charged)
    return {"charge_id": charged["charge_id"], "amount_cents": charged["amount_cents"]}


@payments.handler("refund")
async def refund(cmd: Command) -> dict[str, Any]:
    charged = cmd.state.get(f"ledger/{cmd.body['idempotency_key']}")
    if charged is None or charged["type"] != "charge":
        raise BusinessError("no_such_charge", cmd.body["idempotency_key"])
    entry = f"ledger/{cmd.idempotency_key}"
    if cmd.state.get(entry) is None:
        cmd.state.put(entry, {
            "type": "refund", "charge_id": charged["charge_id"],
            "order_id": charged["order_id"], "saga_id": cmd.saga_id,
            "amount_cents": charged["amount_cents"], "command_id": cmd.command_id})
    return {"refunded_cents": charged["amount_cents"], "charge_id": charged["charge_id"]}


def ledger_report(state: StateView) -> dict[str, Any]:
    entries = [entry for _, entry in state.scan("ledger/")]
    charges = [e for e in entries if e["type"] == "charge"]
    refunds = [e for e in entries if e["type"] == "refund"]
    return {"charges": len(charges), "refunds": len(refunds),
            "charged_cents": sum(e["amount_cents"] for e in charges),
            "refunded_cents": sum(e["amount_cents"] for e in refunds),
            "entries": entries}


# ---- inventory: stock levels and reservations ------------------------------------------
def load_stock(path: Path) -> dict[str, int]:
    """The starting stock from a JSON file (sku -> quantity), as the inventory service's
    defaults: a sku reads as its starting level until a reservation changes it, and a
    restarted or recreated instance keeps the levels its reservations left."""
    stock = {f"stock/{sku}": int(qty) for sku, qty in orjson.loads(path.read_bytes()).items()}
    inventory.defaults.update(stock)
    return stock


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
    reservation = f"res-{_short(cmd.idempotency_key)}"
    cmd.state.put(f"reservation/{cmd.idempotency_key}", {"id": reservation, "items": items})
    return {"reservation": reservation}


@inventory.handler("release")
async def release(cmd: Command) -> dict[str, Any]:
    key = f"reservation/{cmd.body['idempotency_key']}"
    held = cmd.state.get(key)
    if held is None:
        return {"released": False}  # nothing was reserved (or it was released already)
    for item in held["items"]:
        stock = f"stock/{item['sku']}"
        cmd.state.put(stock, cmd.state.get(stock, 0) + item["qty"])
    cmd.state.put(key, None)
    return {"released": True}


def stock_report(state: StateView, starting: dict[str, int] | None = None) -> dict[str, Any]:
    """Stock levels: those reservations changed, over ``starting`` (stock/<sku> -> qty)."""
    levels = dict(starting or {})
    levels.update(state.scan("stock/"))
    return {"stock": {key.removeprefix("stock/"): qty for key, qty in sorted(levels.items())}}


# ---- shipping, notifications, ops ------------------------------------------------------
@shipping.handler("schedule")
async def schedule(cmd: Command) -> dict[str, Any]:
    tracking = f"trk-{_short(cmd.idempotency_key)}"
    cmd.state.put(f"shipment/{cmd.saga_id}", {"tracking": tracking})
    return {"id": tracking}


@notifications.handler("send_confirmation")
async def send_confirmation(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"sent/{cmd.idempotency_key}", cmd.body)
    return {"sent": True}


@ops.handler("alert")
async def alert(cmd: Command) -> dict[str, Any]:
    cmd.state.put(f"alert/{cmd.idempotency_key}", cmd.body)
    return {"alerted": True}


def count_report(prefix: str) -> Any:
    def report(state: StateView) -> dict[str, Any]:
        return {"records": sum(1 for _ in state.scan(prefix))}

    return report


REPORTS = {"payments": ledger_report, "inventory": stock_report,
           "shipping": count_report("shipment/"), "notifications": count_report("sent/"),
           "ops": count_report("alert/")}


def read_report(settings: Settings, service: str, *, stock: Path | None = None
                ) -> dict[str, Any]:
    """A service's report, from its state changelog (read from any machine). For the
    inventory, ``stock`` is the starting stock file the service was given."""
    state = read_state(settings, service)
    if service == "inventory" and stock is not None:
        return stock_report(state, {f"stock/{sku}": int(qty) for sku, qty
                                    in orjson.loads(stock.read_bytes()).items()})
    report: dict[str, Any] = REPORTS[service](state)
    return report


def alerted_orders(settings: Settings) -> Counter[str]:
    """How many alerts the ops service sent about each order."""
    return Counter(alert["order_id"] for _, alert in read_state(settings, "ops").scan("alert/"))


def _short(command_id: str) -> str:
    return hashlib.sha256(command_id.encode()).hexdigest()[:12]
