"""The visibility server on real Kafka, through its HTTP API as any HTTP client would use
it: start (idempotent), watch, signal, cancel, long-poll a result; listings, stats,
timers and dead letters; every bad request a 4xx with a JSON error and a hint; the CLI
reading through it from a machine with no coordinator state; its index equal to the
coordinators' projections; and a second replica giving the same answers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from saga.config import Settings
from saga.dev.stack import Stack
from saga.store.local_projections import LocalProjections
from tests.system import order, running_stack, wait_for


def ready(stack: Stack, name: str) -> str:
    url = stack.url(name)

    def up() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, 90, f"{name} to be ready")
    return url


def all_sagas(url: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = httpx.get(f"{url}/api/sagas", params={**params, "limit": 7,
                                                     **({"cursor": cursor} if cursor else {})}
                         ).json()
        out.extend(page["sagas"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def saga_cli(settings: Settings, *args: str, api: str) -> subprocess.CompletedProcess[str]:
    """`saga` on a "machine" with no coordinator state: an empty state folder and no
    cluster configured, only the API's URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    env.update({"SAGA_API_URL": api, "SAGA_STATE_DIR": str(settings.state_dir / "elsewhere")})
    return subprocess.run([sys.executable, "-m", "saga.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_api_drives_and_shows_sagas(settings: Settings, tmp_path: Path) -> None:
    with running_stack(settings) as stack:
        stack.start(stack.add_server("s1").name)
        url = ready(stack, "server-s1")
        # the first start answers 201 only if a coordinator takes it within 5 s
        wait_for(lambda: "assigned partitions" in stack.log_tail("coordinator-c1"), 60,
                 "the coordinator to own its partitions")
        api = stack_client = httpx.Client(base_url=url, timeout=40)

        # start: created, then idempotent
        first = api.post("/api/sagas", json={"type": "order", "id": "a-1",
                                             "input": order("a-1")})
        assert (first.status_code, first.json()["created"]) == (201, True), first.text
        again = api.post("/api/sagas", json={"type": "order", "id": "a-1",
                                             "input": order("a-1")})
        assert (again.status_code, again.json()["created"]) == (200, False), again.text
        wait_for(lambda: api.get("/api/sagas/a-1").json()["status"] == "WAITING", 60,
                 "a-1 to wait for its pick")
        summary = api.get("/api/sagas/a-1").json()
        assert summary["waiting_for"] == ["warehouse_picked"]
        assert {"saga_id", "type", "status", "result", "error"} <= set(summary)
        # a long poll that times out says so; then the signal ends the saga
        pending = api.get("/api/sagas/a-1/result", params={"wait": 0.5}).json()
        assert (pending["done"], pending["status"]) == (False, "WAITING")
        signalled = api.post("/api/sagas/a-1/signals/warehouse_picked",
                             json={"payload": {"by": "api"}})
        assert signalled.status_code == 202, signalled.text
        done = api.get("/api/sagas/a-1/result", params={"wait": 30}).json()
        assert (done["done"], done["status"]) == (True, "COMPLETED"), done
        assert done["result"]["status"] == "completed"
        history = api.get("/api/sagas/a-1/history").json()
        assert history[0]["type"] == "SagaStarted"
        assert history[-1]["type"] == "SagaCompleted"
        # the second start was answered from the index: nothing was sent for it
        assert "InputIgnored" not in [h["type"] for h in history]

        # out of stock, and a cancel
        for saga_id, sku in (("a-2", "sku-rare"), ("a-3", "sku-1")):
            api.post("/api/sagas", json={"type": "order", "id": saga_id,
                                         "input": order(saga_id, sku)})
        wait_for(lambda: api.get("/api/sagas/a-3").json()["status"] == "WAITING", 60,
                 "a-3 to wait")
        cancelled = api.post("/api/sagas/a-3/cancel", json={"reason": "changed my mind"})
        assert cancelled.status_code == 202
        assert api.get("/api/sagas/a-3/result", params={"wait": 30}).json()["status"] \
            == "CANCELLED"
        assert api.get("/api/sagas/a-2/result", params={"wait": 30}).json()["status"] \
            == "COMPENSATED"
        for n in range(12):  # enough for pages
            api.post("/api/sagas", json={"type": "order", "id": f"b-{n:02d}",
                                         "input": {**order(f"b-{n:02d}"), "pick_timeout_s": 1}})
        wait_for(lambda: len(all_sagas(url, status="COMPLETED")) >= 13, 90, "b-* to end")

        listed = all_sagas(url)
        assert len(listed) == 15
        starts = [s["started_at_ms"] for s in listed]
        assert starts == sorted(starts, reverse=True)  # newest first, across pages
        assert {s["saga_id"] for s in all_sagas(url, status="CANCELLED")} == {"a-3"}
        assert [s["saga_id"] for s in all_sagas(url, id_prefix="a-")] == ["a-1", "a-2", "a-3"]
        stats = api.get("/api/stats").json()
        assert stats["counts"]["COMPLETED"] == 13
        assert stats["durations"]["order"]["count"] == 15
        assert api.get("/api/timers").json()["pending"] == 0

        # dead letters: a garbage input, listed and redriven (it fails again: same reason)
        stack.send_raw(b"junk", b"not a record")
        stack.flush()
        wait_for(lambda: len(api.get("/api/dlq").json()) == 1, 30, "the dead letter")
        [letter] = api.get("/api/dlq").json()
        assert letter["reason"] == "undecodable"
        assert api.get(f"/api/dlq/letters/{letter['id']}").json()["id"] == letter["id"]
        assert api.post("/api/dlq/redrive", json={"ids": [letter["id"]]}).json()[
            "redriven"] == [letter["id"]]
        wait_for(lambda: len(api.get("/api/dlq").json()) == 2, 30, "the redriven letter")

        refusals = bad_requests(api, settings)

        # the CLI on another machine, through the API only
        status = saga_cli(settings, "status", "a-1", "--json", api=url)
        assert status.returncode == 0, status.stderr
        assert orjson.loads(status.stdout) == api.get("/api/sagas/a-1").json()
        history_cli = saga_cli(settings, "history", "a-1", "--json", api=url)
        assert orjson.loads(history_cli.stdout) == history
        listing = saga_cli(settings, "list", "--status", "compensated", "--json", api=url)
        assert [s["saga_id"] for s in orjson.loads(listing.stdout)] == ["a-2"]
        assert saga_cli(settings, "timers", "--json", api=url).returncode == 0
        dlq = saga_cli(settings, "dlq", "list", "--json", api=url)
        assert len(orjson.loads(dlq.stdout)) == 2
        unknown = saga_cli(settings, "status", "zz", api=url)
        assert unknown.returncode == 2
        assert "no saga 'zz'" in unknown.stderr
        # and drives a saga from there: start, signal, its result
        started = saga_cli(settings, "start", "order", "--id", "cli-1", "--input",
                           orjson.dumps(order("cli-1")).decode(), api=url)
        assert started.returncode == 0, started.stderr
        assert "started order cli-1" in started.stdout
        wait_for(lambda: api.get("/api/sagas/cli-1").json().get("status") == "WAITING", 60,
                 "cli-1 to wait")
        assert saga_cli(settings, "signal", "cli-1", "warehouse_picked",
                        api=url).returncode == 0
        assert api.get("/api/sagas/cli-1/result", params={"wait": 30}).json()["status"] \
            == "COMPLETED"
        nowhere = saga_cli(settings, "status", "a-1", api="")
        assert nowhere.returncode == 2
        assert "SAGA_API_URL" in nowhere.stderr

        # a second replica, started now, builds its own index and agrees
        stack.start(stack.add_server("s2").name)
        other = ready(stack, "server-s2")
        mine = {s["saga_id"]: s for s in all_sagas(url)}
        theirs = {s["saga_id"]: s for s in all_sagas(other)}
        assert mine == theirs
        assert httpx.get(f"{other}/api/sagas/a-1/history").json() == history
        assert stack.dead() == [], "\n".join(stack.dead())
        stack_client.close()

    # the index agrees with the coordinators' projections, saga by saga
    projections = LocalProjections(settings)
    try:
        folded = {s.saga_id: s.summary() for s in projections.states()}
    finally:
        projections.close()
    assert mine == folded
    print(f"\n{len(refusals)} bad requests refused: {sorted(set(refusals))}")


def bad_requests(api: httpx.Client, settings: Settings) -> list[int]:
    """Each bad request gets the right 4xx and a JSON error with a hint; never a 5xx."""
    cases: list[tuple[int, httpx.Response]] = [
        (400, api.post("/api/sagas", content=b"{not json",
                       headers={"content-type": "application/json"})),
        (415, api.post("/api/sagas", content=b'{"type": "order", "id": "x"}',
                       headers={"content-type": "text/plain"})),
        (422, api.post("/api/sagas", json={"type": "teleport", "id": "x"})),
        (422, api.post("/api/sagas", json={"type": "order"})),
        (422, api.post("/api/sagas", json={"type": "order", "id": ".."})),
        (413, api.post("/api/sagas", json={"type": "order", "id": "big",
                                           "input": "x" * (settings.max_payload_bytes * 2)})),
        (404, api.get("/api/sagas/nobody")),
        (404, api.get("/api/sagas/nobody/history")),
        (404, api.get("/api/sagas/nobody/result")),
        (404, api.post("/api/sagas/nobody/signals/go", json={})),
        (404, api.post("/api/sagas/nobody/cancel", json={})),
        (404, api.get("/api/dlq/letters/0:999999")),
        (422, api.get("/api/dlq/letters/garbage")),
        (422, api.post("/api/sagas/a-1/signals/go",  # an integer beyond 64 bits
                       content=b'{"payload": 123456789012345678901234}',
                       headers={"content-type": "application/json"})),
        (422, api.post("/api/sagas/a-1/abandon", json={"compensate": 0})),
        (405, api.get("/api/dlq/redrive")),
        (422, api.get("/api/sagas", params={"status": "SLEEPING"})),
        (422, api.get("/api/sagas", params={"limit": 0})),
        (422, api.get("/api/sagas", params={"cursor": "***"})),
        (422, api.post("/api/dlq/redrive", json={})),
        (404, api.get("/api/nothing-here")),
        (405, api.delete("/api/sagas/a-1")),
        # what a page of another site can send (tests/saga/server/test_api_hostile.py)
        (415, api.post("/api/sagas/a-1/cancel", data={"reason": "csrf"})),
        (400, api.post("/api/sagas/a-1/cancel", content=b"",
                       headers={"content-type": "application/json"})),
        (400, api.get("/api/sagas/a-1", headers={"host": "rebound.example"})),
        (403, api.post("/api/sagas/a-1/cancel", json={},
                       headers={"origin": "http://evil.example"})),
    ]
    statuses = []
    for expected, response in cases:
        body = response.json()
        assert response.status_code == expected, (expected, response.request.url,
                                                  response.text)
        assert body["error"], body
        assert "hint" in body
        assert body["code"], body  # stable, for programs (saga.errors.ErrorCode)
        statuses.append(response.status_code)
    # what a refusal says, for a person
    unknown = api.post("/api/sagas", json={"type": "teleport", "id": "x"}).json()
    assert unknown["error"] == "no workflow named 'teleport'"
    assert unknown["code"] == "unknown_saga_type"
    assert "order" in unknown["hint"]
    assert api.get("/api/sagas/x").status_code == 404  # nothing above started a saga
    return statuses


def test_updates_attributes_schedules_and_bulk_through_the_api(settings: Settings) -> None:
    """What long-lived sagas add to the API and to the CLI that reads through it: an
    update answered (and refused), listing by attribute and version, a schedule created,
    listed, paused and deleted, bulk actions with a dry run."""
    with running_stack(settings) as stack:
        stack.start(stack.add_server("s1").name)
        url = ready(stack, "server-s1")
        api = httpx.Client(base_url=url, timeout=60)
        for n, plan in enumerate(("basic", "gold", "gold")):
            created = api.post("/api/sagas", json={"type": "subscription", "id": f"sub-{n}",
                                                   "input": {"customer": f"c-{n}",
                                                             "plan": plan,
                                                             "amount_cents": 900,
                                                             "period_s": 3600}})
            assert created.status_code == 201, created.text
        wait_for(lambda: all(api.get(f"/api/sagas/sub-{n}").json()["waiting_for"]
                             == ["cancel_subscription"] for n in range(3)), 60,
                 "the subscriptions to charge and wait")

        # an update: answered, applied once when sent again, refused by the validator
        change = {"payload": {"plan": "gold", "amount_cents": 1900}, "update_id": "u-7"}
        answered = api.post("/api/sagas/sub-0/updates/change_plan", json=change)
        assert answered.status_code == 200, answered.text
        assert answered.json() == {"update_id": "u-7", "pending": False,
                                   "result": {"plan": "gold", "from_cycle": 1}}
        assert api.post("/api/sagas/sub-0/updates/change_plan", json=change).json() == \
            answered.json()
        refused = api.post("/api/sagas/sub-0/updates/change_plan",
                           json={"payload": {"plan": "free", "amount_cents": 0}})
        assert refused.status_code == 409, refused.text
        assert "amount_cents must be a positive integer" in refused.json()["error"]
        unknown = api.post("/api/sagas/sub-0/updates/teleport", json={"payload": 1})
        assert unknown.status_code == 409, unknown.text
        history = api.get("/api/sagas/sub-0/history").json()
        assert [h["type"] for h in history].count("UpdateApplied") == 1
        cli_update = saga_cli(settings, "update", "sub-1", "change_plan", "--payload",
                              '{"plan": "basic", "amount_cents": 500}', "--json", api=url)
        assert cli_update.returncode == 0, cli_update.stderr
        assert orjson.loads(cli_update.stdout) == {
            "saga_id": "sub-1", "update": "change_plan",
            "result": {"plan": "basic", "from_cycle": 1}}

        # attributes and version in listings (API and CLI)
        gold = all_sagas(url, attribute="plan=gold", type="subscription")
        assert sorted(s["saga_id"] for s in gold) == ["sub-1", "sub-2"]  # as they started
        assert all_sagas(url, attribute="plan=gold", version=2) == []
        by_cli = saga_cli(settings, "list", "--attribute", "customer=c-2", "--json", api=url)
        assert [s["saga_id"] for s in orjson.loads(by_cli.stdout)] == ["sub-2"]

        # a schedule: created (then idempotent), listed, paused, deleted
        spec = {"schedule_id": "nightly", "cron": "0 2 * * *", "saga_type": "order",
                "input": order("n"), "timezone": "Europe/Paris", "overlap": "buffer",
                "catchup_window_s": 600}
        assert api.post("/api/schedules", json=spec).status_code == 201
        assert api.post("/api/schedules", json=spec).status_code == 200
        bad = api.post("/api/schedules", json={**spec, "schedule_id": "x", "cron": "61 * * *"})
        assert bad.status_code == 422, bad.text
        assert "hint" in bad.json()
        wait_for(lambda: api.get("/api/schedules/nightly").status_code == 200, 30,
                 "the schedule to be listed")
        listed = api.get("/api/schedules/nightly").json()
        assert (listed["cron"], listed["timezone"], listed["overlap"], listed["paused"]) == \
            ("0 2 * * *", "Europe/Paris", "buffer", False)
        assert listed["next_slot_ms"] > 0
        assert api.post("/api/schedules/nightly/pause", json={}).status_code == 202
        wait_for(lambda: api.get("/api/schedules/nightly").json()["paused"], 30,
                 "the schedule to pause")
        created_by_cli = saga_cli(settings, "schedule", "create", "hourly", "--cron",
                                  "0 * * * *", "--type", "order", "--input",
                                  orjson.dumps(order("h")).decode(), api=url)
        assert created_by_cli.returncode == 0, created_by_cli.stderr
        wait_for(lambda: len(api.get("/api/schedules").json()) == 2, 30, "two schedules")
        cli_list = saga_cli(settings, "schedule", "list", "--json", api=url)
        assert sorted(s["schedule_id"] for s in orjson.loads(cli_list.stdout)) == \
            ["hourly", "nightly"]
        assert api.request("DELETE", "/api/schedules/nightly", json={}).status_code == 202
        assert saga_cli(settings, "schedule", "delete", "hourly", api=url).returncode == 0
        wait_for(lambda: api.get("/api/schedules").json() == [], 30, "no schedules")
        assert api.get("/api/schedules/nightly").status_code == 404

        # bulk: a dry run touches nothing; then every gold subscription is cancelled
        dry = api.post("/api/bulk/signal", json={
            "filter": {"type": "subscription", "attributes": {"plan": "gold"}},
            "name": "cancel_subscription", "dry_run": True}).json()
        assert (sorted(dry["matched"]), dry["sent"], dry["dry_run"]) == \
            (["sub-1", "sub-2"], 0, True)
        time.sleep(1)
        assert api.get("/api/sagas/sub-1").json()["status"] == "WAITING"
        sent = api.post("/api/bulk/signal", json={
            "filter": {"type": "subscription", "attributes": {"plan": "gold"}},
            "name": "cancel_subscription", "payload": {}}).json()
        assert sent["sent"] == 2
        for saga_id in ("sub-1", "sub-2"):
            done = api.get(f"/api/sagas/{saga_id}/result", params={"wait": 30}).json()
            assert (done["status"], done["result"]["status"]) == ("COMPLETED", "cancelled")
        dry_cli = saga_cli(settings, "cancel", "--type", "subscription", "--status",
                           "waiting", "--dry-run", "--json", api=url)
        assert orjson.loads(dry_cli.stdout)["sagas"] == ["sub-0"]
        assert saga_cli(settings, "cancel", "--type", "subscription", "--status", "waiting",
                        api=url).returncode == 0
        assert api.get("/api/sagas/sub-0/result", params={"wait": 30}).json()["status"] == \
            "CANCELLED"
        assert stack.dead() == [], "\n".join(stack.dead())
        api.close()
