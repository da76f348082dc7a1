"""Tokens on the HTTP API, route by route from its own OpenAPI document: anonymous and
unknown callers get a 401, read tokens a 403 on every route that acts, operate tokens
through; the client and the CLI send SAGA_API_TOKEN and say clearly when refused."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest

from saga import BlockingSagaClient
from saga.config import Secret, Settings
from saga.dev.stack import Stack
from saga.errors import AccessDenied
from saga.kafka.topics import admin_client, create_topics, load_specs
from tests.saga.server.test_api import ready

READ, OPERATE = "read-token-7f3a", "operate-token-91c2"


def _routes(url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    return [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
            for path, item in spec["paths"].items() if path.startswith("/api/")
            for method in item]


def _call(url: str, method: str, path: str, token: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{url}{path}", headers=headers, timeout=30,
                         json={} if method != "GET" else None,
                         params={"wait": 0} if path.endswith("/result") else None)


def _cli(url: str, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    env.update({"SAGA_API_URL": url, "SAGA_API_TOKEN": token})
    return subprocess.run([sys.executable, "-m", "saga.cli.main", *args], env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def test_every_route_refuses_callers_without_the_role_it_needs(settings: Settings) -> None:
    create_topics(admin_client(settings.kafka), load_specs(settings))
    stack = Stack(settings, process_env=lambda name: {
        "SAGA_API_READ_TOKENS": f"other,{READ}", "SAGA_API_OPERATE_TOKENS": OPERATE})
    server = stack.start(stack.add_server("auth").name)
    try:
        url = ready(stack, server.name)  # /readyz stays open
        routes = _routes(url)
        outcomes = {(m, p): {who: _call(url, m, p, token)
                             for who, token in (("anonymous", None), ("unknown", "nope"),
                                                ("read", READ), ("operate", OPERATE))}
                    for m, p in routes}
        open_routes = {p: httpx.get(f"{url}{p}", timeout=10).status_code
                       for p in ("/healthz", "/metrics", "/openapi.json", "/console/")}
        cli_read = _cli(url, READ, "list", "--json")
        cli_cancel = _cli(url, READ, "cancel", "nobody", "--reason", "test")
        cli_none = _cli(url, "", "list", "--json")
        with BlockingSagaClient(settings=Settings(api_url=url, api_token=Secret(READ))
                                ) as reader:
            listed = reader.list()
            with pytest.raises(AccessDenied) as denied:
                reader.start("order", "auth-1", {"id": "auth-1"})
        dead = stack.dead()
    finally:
        stack.stop_all()

    assert dead == []
    assert len(routes) >= 15
    acting = [(m, p) for m, p in routes if m != "GET"]
    assert acting, "the API has routes that act"
    for (method, path), by in outcomes.items():
        for who in ("anonymous", "unknown"):
            response = by[who]
            assert response.status_code == 401, (method, path, who)
            assert response.headers["www-authenticate"].startswith("Bearer")
            assert "SAGA_API_TOKEN" in response.json()["hint"]
        if method == "GET":
            assert by["read"].status_code not in (401, 403), (method, path)
        else:
            assert by["read"].status_code == 403, (method, path)
            assert "SAGA_API_OPERATE_TOKENS" in by["read"].json()["hint"]
        assert by["operate"].status_code not in (401, 403), (method, path)
        assert by["operate"].status_code < 500, (method, path, by["operate"].text)
    assert open_routes == {"/healthz": 200, "/metrics": 200, "/openapi.json": 200,
                           "/console/": 200}

    assert cli_read.returncode == 0, cli_read.stderr
    assert cli_cancel.returncode == 2
    assert "SAGA_API_OPERATE_TOKENS" in cli_cancel.stderr
    assert cli_none.returncode == 2
    assert "SAGA_API_TOKEN" in cli_none.stderr
    for said in (cli_read, cli_cancel, cli_none):
        assert READ not in said.stdout + said.stderr
        assert OPERATE not in said.stdout + said.stderr
    assert listed.sagas == []
    assert denied.value.hint is not None
    assert "operate" in denied.value.hint.lower()
