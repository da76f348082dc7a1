"""A shop's checkout API on top of the order saga: what application code that *uses*
kafka-saga looks like. Run it beside `make demo`'s cluster (or the compose stack):

    SAGA_BOOTSTRAP_SERVERS=127.0.0.1:29092 .venv/bin/uvicorn saga.examples.shop:app --port 8000
    curl -X POST localhost:8000/orders/o-7 -H 'content-type: application/json' \\
         -d '{"customer": "c-9", "amount_cents": 4599, "items": [{"sku": "sku-1", "qty": 2}]}'
    curl -X POST localhost:8000/orders/o-7/picked          # the warehouse picked it
    curl 'localhost:8000/orders/o-7/result?wait=30'

The client is configured from the environment like every kafka-saga process
(SAGA_BOOTSTRAP_SERVERS, or SAGA_API_URL for a `saga server`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from saga import SagaClient, SagaDidNotComplete, SagaNotFound, SagaStillRunning


def create_app(client: SagaClient | None = None) -> FastAPI:
    clients: list[SagaClient] = [client] if client else []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not clients:
            clients.append(SagaClient())  # from SAGA_* variables
        yield
        await clients[0].close()

    app = FastAPI(title="shop", lifespan=lifespan)

    @app.post("/orders/{order_id}", status_code=202)
    async def checkout(order_id: str, order: dict[str, Any]) -> dict[str, Any]:
        handle = await clients[0].start("order", order_id, {**order, "id": order_id})
        return {"order_id": order_id, "new": handle.created,
                "result": f"/orders/{order_id}/result"}

    @app.post("/orders/{order_id}/picked", status_code=202)
    async def picked(order_id: str) -> dict[str, Any]:
        await clients[0].signal(order_id, "warehouse_picked", {"by": "shop"})
        return {"order_id": order_id}

    @app.get("/orders/{order_id}/result", response_model=None)
    async def result(order_id: str, wait: float = 10.0) -> dict[str, Any] | JSONResponse:
        try:
            outcome = await clients[0].result(order_id, timeout=wait)
        except SagaStillRunning as running:
            return JSONResponse({"order_id": order_id, "status": running.status}, 202)
        except SagaDidNotComplete as ended:  # e.g. out of stock: refunded
            return JSONResponse({"order_id": order_id, "status": ended.status,
                                 "reason": ended.reason}, 409)
        except SagaNotFound:
            return JSONResponse({"order_id": order_id, "error": "no such order"}, 404)
        return {"order_id": order_id, "status": "COMPLETED", "tracking": outcome["tracking"]}

    return app


app = create_app()
