"""The Python client on real Kafka, as application code would use it: over Kafka alone
(blocking) and through `saga server` (asyncio); start is idempotent and says whether it
created the saga, result() waits through a SIGKILL of the coordinator, and each other
ending is a typed error with its status and reason."""

from __future__ import annotations

import asyncio

import pytest

from saga import (
    BlockingSagaClient,
    SagaCancelled,
    SagaClient,
    SagaCompensated,
    SagaNotFound,
    SagaStatus,
    SagaStillRunning,
    UnknownSagaType,
)
from saga.config import Settings
from tests.saga.server.test_api import ready
from tests.system import order, running_stack, wait_for


def test_the_blocking_client_over_kafka_alone(settings: Settings) -> None:
    with running_stack(settings) as stack, BlockingSagaClient(settings=settings) as client:
        handle = client.start("order", "k-1", order("k-1"))
        assert handle.created is True
        assert client.start("order", "k-1", order("k-1")).created is False
        with pytest.raises(UnknownSagaType, match="teleport"):
            client.start("teleport", "k-x", {})
        wait_for(lambda: client.status("k-1").status is SagaStatus.WAITING, 60, "the pick")
        # the coordinator dies; the signal waits in the inbox; result() waits it out
        stack.kill("coordinator-c1")
        client.signal("k-1", "warehouse_picked", {"by": "client"})
        stack.start("coordinator-c1")
        assert handle.result(timeout=120)["status"] == "completed"

        rare = client.start("order", "k-2", order("k-2", "sku-rare"))
        with pytest.raises(SagaCompensated) as compensated:
            rare.result(timeout=60)
        assert (compensated.value.status, compensated.value.reason) == (
            "COMPENSATED", "out_of_stock")
        slow = client.start("order", "k-3", order("k-3"))
        with pytest.raises(SagaStillRunning, match="still"):
            slow.result(timeout=1)
        slow.cancel("changed my mind")
        with pytest.raises(SagaCancelled) as cancelled:
            slow.result(timeout=60)
        assert cancelled.value.reason == "changed my mind"

        info = client.status("k-1")
        assert (info.type, info.status, info.done) == ("order", SagaStatus.COMPLETED, True)
        types = [entry["type"] for entry in client.history("k-1")]
        assert types[0] == "SagaStarted"
        assert types.count("InputIgnored") == 1  # the second start, recorded
        page = client.list(type="order", limit=2)
        assert [s.saga_id for s in page.sagas] == ["k-3", "k-2"]  # newest first
        rest = client.list(type="order", limit=2, cursor=page.next_cursor)
        assert ([s.saga_id for s in rest.sagas], rest.next_cursor) == (["k-1"], None)
        assert [s.saga_id for s in client.list(status="compensated").sagas] == ["k-2"]
        with pytest.raises(SagaNotFound):
            client.status("nobody")
        assert stack.dead() == [], "\n".join(stack.dead())


def test_the_async_client_through_the_api(settings: Settings) -> None:
    with running_stack(settings) as stack:
        stack.start(stack.add_server("c").name)
        url = ready(stack, "server-c")

        async def application() -> None:
            async with SagaClient(api_url=url) as client:
                handle = await client.start("order", "h-1", order("h-1"))
                assert handle.created is True
                again = await client.start("order", "h-1", order("h-1"))
                assert again.created is False
                with pytest.raises(UnknownSagaType):
                    await client.start("teleport", "h-x", {})
                while (await handle.status()).status is not SagaStatus.WAITING:
                    await asyncio.sleep(0.2)
                stack.kill("coordinator-c1")
                await handle.signal("warehouse_picked")
                stack.start("coordinator-c1")
                result = await handle.result(timeout=120)
                assert result["status"] == "completed"
                page = await client.list(status=SagaStatus.COMPLETED)
                assert [s.saga_id for s in page.sagas] == ["h-1"]
                assert (await client.history("h-1"))[-1]["type"] == "SagaCompleted"
                with pytest.raises(SagaNotFound):
                    await client.status("nobody")

        asyncio.run(application())
        assert stack.dead() == [], "\n".join(stack.dead())


def test_the_shop_example_checks_out_orders(settings: Settings) -> None:
    """The README's example application (saga.examples.shop), served in-process."""
    import httpx
    from saga.examples.shop import create_app

    async def shopping() -> None:
        client = SagaClient(settings=settings)
        transport = httpx.ASGITransport(app=create_app(client))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop",
                                     timeout=90) as shop:
            item = {"customer": "c-1", "amount_cents": 700,
                    "items": [{"sku": "sku-1", "qty": 1}]}
            accepted = await shop.post("/orders/s-1", json=item)
            assert (accepted.status_code, accepted.json()["new"]) == (202, True)
            assert (await shop.post("/orders/s-1", json=item)).json()["new"] is False
            waiting = await shop.get("/orders/s-1/result", params={"wait": 1})
            assert waiting.status_code == 202  # started, waiting for the warehouse
            assert (await shop.post("/orders/s-1/picked")).status_code == 202
            done = await shop.get("/orders/s-1/result", params={"wait": 60})
            assert (done.status_code, done.json()["status"]) == (200, "COMPLETED"), done.text
            assert done.json()["tracking"].startswith("trk-")
            short = {**item, "items": [{"sku": "sku-rare", "qty": 1}]}
            await shop.post("/orders/s-2", json=short)
            refused = await shop.get("/orders/s-2/result", params={"wait": 60})
            assert (refused.status_code, refused.json()["reason"]) == (409, "out_of_stock")
            assert (await shop.get("/orders/none/result")).status_code == 404
        await client.close()

    with running_stack(settings):
        asyncio.run(shopping())
