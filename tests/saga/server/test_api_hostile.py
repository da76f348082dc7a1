"""Issue 19 from outside: what a hostile or careless caller sends `saga server`, over plain
HTTP (urllib, httpx, raw sockets) to the real app served by uvicorn over an index on
disk (tests/saga/server/offline_server.py: no Kafka; what it would have produced is
written down, so each test sees whether a request acted).

- cross-site requests: a form on another site, a text/plain or an empty body, on every
  route that acts, is refused and acts on nothing; a DNS-rebinding Host and a foreign
  Origin are refused; the allowed hosts are a setting;
- ids in paths are decoded once: ``o%2D1`` is not ``o-1``, ``x/cancel`` is not the cancel
  route of ``x``, through raw HTTP, the client and the CLI;
- a body over the limit gets its 413 and JSON, sent whole or chunked, not a reset;
- long polls beyond the limit get a 503 with a hint, and the others still answer;
- every refusal carries a stable ``code``, and the client raises the class of the code.
"""

from __future__ import annotations

import http.client
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from saga.client.backends import HttpBackend
from saga.engine import events as ev
from saga.engine.inputs import CancelSaga, DeliverSignal
from saga.errors import (
    AccessDenied,
    ErrorCode,
    InvalidRequest,
    PayloadTooLarge,
    SagaNotFound,
    ServerBusy,
    UnknownSagaType,
)
from saga.store.visibility import VisibilityIndex
from tests.saga.server.index_builder import add, letter, saga
from tests.saga.server.offline_server import offline_server, sent

#: Ids a person or a program may well choose, each a trap for a URL built carelessly.
AWKWARD_IDS = ["o-1", "o%2D1", "a/b", "x", "x/cancel", "../x", "a/../b", "..x", "...",
               "sp ace", "q?x=1", "h#frag", "é-ü-日本", "%", "%%41", "a+b", "semi;colon",
               ".", ".."]  # the last two: started through Kafka (the API refuses them)
ACTING_BODIES: list[tuple[str, dict[str, str], bytes]] = [
    ("a form", {"content-type": "application/x-www-form-urlencoded"}, b"reason=csrf"),
    ("a multipart form", {"content-type": "multipart/form-data; boundary=x"},
     b"--x\r\nContent-Disposition: form-data; name=reason\r\n\r\ncsrf\r\n--x--\r\n"),
    ("text/plain holding JSON", {"content-type": "text/plain"}, b"{}"),
    ("no body, no type", {}, b""),
    ("an empty JSON body", {"content-type": "application/json"}, b""),
]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("hostile") / "index"
    index = VisibilityIndex(path)
    try:
        add(index, *(saga(i, saga_input={"id": i}) for i in AWKWARD_IDS))
        add(index, saga("schedule:nightly", saga_type="schedule"))
        # a long history, some dead letters
        long = saga("long-1", *[ev.SignalReceived(f"s{n}", {"n": n}) for n in range(2500)])
        add(index, long)
        index.apply([], [letter(0, n, b"junk" * 10, "undecodable" if n % 2 else "unknown_saga")
                         for n in range(250)], {}, {})
        # many sagas a filter does not take: a listing must not read them all
        for start in range(0, 30_000, 5000):
            add(index, *(saga(f"bulk-{n:06d}") for n in range(start, start + 5000)))
    finally:
        index.close()
    return path


@pytest.fixture(scope="module")
def server(index_dir: Path) -> Iterator[tuple[str, Path]]:
    sent_file = index_dir.parent / "sent.jsonl"
    with offline_server(index_dir, sent_file, env={
            "SAGA_SERVER_MAX_WAITING": "3", "SAGA_SERVER_SCAN_LIMIT": "2000"}) as url:
        yield url, sent_file


def _acting_routes(url: str) -> list[tuple[str, str]]:
    spec = httpx.get(f"{url}/openapi.json", timeout=10).json()
    filled = {"saga_id": "x", "name": "go", "schedule_id": "nightly", "op": "pause",
              "action": "cancel"}
    return [(method.upper(), re.sub(r"\{([^}]+)\}", lambda m: filled[m.group(1)], path))
            for path, item in spec["paths"].items() for method in item
            if method.upper() in ("POST", "PUT", "PATCH", "DELETE")]


def _raw(url: str, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One request as bytes on a socket, and the answer read back by http.client."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, dict(response.getheaders()), response.read()


def _urlopen_refused(request: urllib.request.Request) -> tuple[int, str]:
    """The status and code urllib reads for a request the server refuses (urllib sends
    the whole body before it reads anything: a server that answers early and closes
    made it fail with "Connection reset by peer" instead)."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    with refused.value:
        said = orjson.loads(refused.value.read())
    assert "SAGA_" in said["hint"] or said["code"] != "too_large", said
    return refused.value.code, str(said["code"])


def _code(response: httpx.Response) -> str:
    body = response.json()
    assert body["error"], body
    assert "hint" in body, body
    return str(body["code"])


def test_no_route_that_acts_takes_what_a_page_of_another_site_can_send(
        server: tuple[str, Path]) -> None:
    url, sent_file = server
    before = len(sent(sent_file))
    routes = _acting_routes(url)
    assert len(routes) >= 10
    for method, path in routes:
        for what, headers, body in ACTING_BODIES:
            answer = httpx.request(method, f"{url}{path}", headers=headers, content=body,
                                   timeout=10)
            expected = (400, "bad_request") if what == "an empty JSON body" else (
                415, "unsupported_media_type")
            assert (answer.status_code, _code(answer)) == expected, (method, path, what)
    # What a browser's form submission is on the wire: urllib posts a form the same way.
    form = urllib.request.Request(f"{url}/api/sagas/x/cancel", data=b"reason=csrf",
                                  method="POST")
    assert _urlopen_refused(form) == (415, "unsupported_media_type")
    assert len(sent(sent_file)) == before, "a refused request acted"
    # the same routes take JSON, {} at least
    taken = httpx.post(f"{url}/api/sagas/x/cancel", json={}, timeout=10)
    assert taken.status_code == 202, taken.text
    assert sent(sent_file)[-1] == {"saga_id": "x", "input": "CancelSaga", "value":
                                   "CancelSaga(reason='cancelled through the API')"}
    # a route that does not exist, or a method it does not take, is still said so
    assert _code(httpx.delete(f"{url}/api/sagas/x", timeout=10)) == "method_not_allowed"
    assert _code(httpx.post(f"{url}/api/nothing", json={}, timeout=10)) == "no_such_route"


def test_a_rebound_host_and_a_foreign_origin_are_refused(server: tuple[str, Path]) -> None:
    url, sent_file = server
    before = len(sent(sent_file))
    port = url.rsplit(":", 1)[1]
    # DNS rebinding: the attacker's name now resolves to 127.0.0.1; the browser sends it
    for path in ("/api/sagas", "/api/sagas/x", "/console/", "/openapi.json"):
        rebound = httpx.get(f"{url}{path}", headers={"host": f"evil.example:{port}"},
                            timeout=10)
        assert (rebound.status_code, _code(rebound)) == (400, "host_not_allowed"), path
    status, _, body = _raw(url, b"POST /api/sagas/x/cancel HTTP/1.1\r\nHost: attacker.test\r\n"
                                b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                                b"Connection: close\r\n\r\n{}")
    assert (status, orjson.loads(body)["code"]) == (400, "host_not_allowed")
    # no Host at all (HTTP/1.0)
    status, _, body = _raw(url, b"GET /api/sagas HTTP/1.0\r\n\r\n")
    assert (status, orjson.loads(body)["code"]) == (400, "host_not_allowed")
    # a page of another site, JSON and all (as fetch() would send it after a preflight
    # this server never grants), and a sandboxed page ("null")
    for origin in ("http://evil.example", f"http://evil.example:{port}", "null",
                   "file://", "https://127.0.0.1.evil.example"):
        foreign = httpx.post(f"{url}/api/sagas/x/cancel", json={},
                             headers={"origin": origin}, timeout=10)
        assert (foreign.status_code, _code(foreign)) == (403, "origin_not_allowed"), origin
    # what a browser sends for an <img> or a form of another site's page (no Origin on
    # a GET): Fetch Metadata says where it comes from; a long poll it would hold too
    embedded = {"sec-fetch-site": "cross-site", "sec-fetch-mode": "no-cors",
                "sec-fetch-dest": "image"}
    for path in ("/api/sagas/x/result?wait=300", "/api/sagas", "/console/app.js"):
        foreign = httpx.get(f"{url}{path}", headers=embedded, timeout=10)
        assert (foreign.status_code, _code(foreign)) == (403, "origin_not_allowed"), path
    same_site = httpx.post(f"{url}/api/sagas/x/cancel", json={}, timeout=10, headers={
        "sec-fetch-site": "same-site", "sec-fetch-mode": "cors"})
    assert _code(same_site) == "origin_not_allowed"
    assert len(sent(sent_file)) == before, "a refused request acted"
    # a person following a link from another site opens the console
    followed = httpx.get(f"{url}/console/", timeout=10, headers={
        "sec-fetch-site": "cross-site", "sec-fetch-mode": "navigate",
        "sec-fetch-dest": "document"})
    assert followed.status_code == 200
    # the console's own page, and loopback names, are served
    for host, own in ((f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"),
                      (f"localhost:{port}", f"http://localhost:{port}"),
                      (f"[::1]:{port}", None)):
        headers = {"host": host, **({"origin": own} if own else {})}
        assert httpx.get(f"{url}/api/sagas/x", headers=headers, timeout=10).status_code \
            == 200, host
    # probes and scrapers call addresses: health stays open to any Host
    for path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{path}", headers={"host": "10.1.2.3:8090"},
                         timeout=10).status_code == 200, path


def test_the_allowed_hosts_are_a_setting(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    subprocess.run(["cp", "-r", str(index_dir), str(copy)], check=True)
    with offline_server(copy, tmp_path / "sent.jsonl",
                        env={"SAGA_SERVER_ALLOWED_HOSTS": "saga.internal, ops.example"}
                        ) as url:
        named = httpx.get(f"{url}/api/sagas/x", headers={"host": "saga.internal"},
                          timeout=10)
        assert named.status_code == 200
        from_ops = httpx.post(f"{url}/api/sagas/x/cancel", json={}, timeout=10, headers={
            "host": "saga.internal", "origin": "https://ops.example"})
        assert from_ops.status_code == 202
        assert _code(httpx.get(f"{url}/api/sagas/x", timeout=10)) == "host_not_allowed"


def test_ids_in_paths_are_decoded_exactly_once(server: tuple[str, Path]) -> None:
    url, sent_file = server
    # raw HTTP: each escape is read once
    assert httpx.get(f"{url}/api/sagas/o%2D1").json()["saga_id"] == "o-1"
    assert httpx.get(f"{url}/api/sagas/o%252D1").json()["saga_id"] == "o%2D1"
    status, _, body = _raw(url, b"GET /api/sagas/a%2Fb HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Connection: close\r\n\r\n")
    assert (status, orjson.loads(body)["saga_id"]) == (200, "a/b")
    # a / inside an id never reaches another route: this is saga "x/cancel", read
    status, _, body = _raw(url, b"GET /api/sagas/x%2Fcancel HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                b"Connection: close\r\n\r\n")
    assert (status, orjson.loads(body)["saga_id"]) == (200, "x/cancel")
    # UTF-8, escaped as it must be
    assert httpx.get(f"{url}/api/sagas/%C3%A9-%C3%BC-%E6%97%A5%E6%9C%AC").json()[
        "saga_id"] == "é-ü-日本"
    # an escape that is not UTF-8: a 400, not a 5xx
    bad = httpx.get(f"{url}/api/sagas/%FF%FE")
    assert (bad.status_code, _code(bad)) == (400, "bad_request")

    # the client: every awkward id reads and acts on its own saga
    backend = HttpBackend(url)
    before = len(sent(sent_file))
    for saga_id in AWKWARD_IDS:
        assert backend.summary(saga_id)["saga_id"] == saga_id
        assert backend.history(saga_id)[0]["type"] == "SagaStarted"
        backend.send(saga_id, CancelSaga("by the client"))
        backend.send(saga_id, DeliverSignal("a/b?c#d %", {}))
    acted = sent(sent_file)[before:]
    assert [a["saga_id"] for a in acted] == [i for i in AWKWARD_IDS for _ in (1, 2)]
    assert all("a/b?c#d %" in a["value"] for a in acted[1::2])
    with pytest.raises(SagaNotFound):
        backend.summary("o%2D2")  # not o-2... nor anything else
    backend.close()

    # the CLI goes the same way
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAGA_")}
    env["SAGA_API_URL"] = url
    for saga_id in ("o%2D1", "x/cancel", "../x"):
        cli = subprocess.run([sys.executable, "-m", "saga.cli.main", "cancel", saga_id,
                              "--reason", "cli"], env=env, capture_output=True, text=True,
                             timeout=60, check=False)
        assert cli.returncode == 0, cli.stderr
        assert sent(sent_file)[-1]["saga_id"] == saga_id
        shown = subprocess.run([sys.executable, "-m", "saga.cli.main", "status", saga_id,
                                "--json"], env=env, capture_output=True, text=True,
                               timeout=60, check=False)
        assert orjson.loads(shown.stdout)["saga_id"] == saga_id, shown.stderr

    # the API refuses to start what no URL could name
    for saga_id in (".", ".."):
        refused = httpx.post(f"{url}/api/sagas", json={"type": "order", "id": saga_id})
        assert (refused.status_code, _code(refused)) == (422, "invalid_request")
    # %2E%2E is the id "..", not a step up the path
    status, _, body = _raw(url, b"GET /api/sagas/%2E%2E/history HTTP/1.1\r\n"
                                b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert (status, orjson.loads(body)[0]["type"]) == (200, "SagaStarted")


def test_a_body_over_the_limit_gets_its_413_not_a_reset(server: tuple[str, Path]) -> None:
    url, sent_file = server
    before = len(sent(sent_file))
    big = orjson.dumps({"type": "order", "id": "big", "input": "x" * 3_000_000})
    # urllib sends the whole body before it reads: it used to meet a reset connection
    request = urllib.request.Request(f"{url}/api/sagas", data=big, method="POST",
                                     headers={"content-type": "application/json"})
    assert _urlopen_refused(request) == (413, "too_large")
    # chunked, no length announced: the same (it was a 400)
    for chunked in (True, False):
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
        parts = iter([big[i:i + 65536] for i in range(0, len(big), 65536)])
        connection.request("POST", "/api/sagas", body=parts if chunked else big,
                           headers={"content-type": "application/json"},
                           encode_chunked=chunked)
        response = connection.getresponse()
        assert response.status == 413, chunked
        assert orjson.loads(response.read())["code"] == "too_large"
        connection.close()
    # a form posted too large is refused for what it is, readable too
    form = urllib.request.Request(f"{url}/api/sagas/x/cancel", data=b"r=" + b"x" * 3_000_000,
                                  method="POST")
    assert _urlopen_refused(form) in ((413, "too_large"), (415, "unsupported_media_type"))
    # the client says it in its own terms
    backend = HttpBackend(url)
    with pytest.raises(PayloadTooLarge):
        backend.start("order", "big", "x" * 3_000_000, 1)
    backend.close()
    assert len(sent(sent_file)) == before


def test_waiting_requests_are_bounded(server: tuple[str, Path]) -> None:
    url, _ = server
    answers: list[int] = []

    def wait() -> None:
        answers.append(httpx.get(f"{url}/api/sagas/x/result", params={"wait": 15},
                                 timeout=40).status_code)

    waiting = [threading.Thread(target=wait) for _ in range(3)]  # SAGA_SERVER_MAX_WAITING
    for thread in waiting:
        thread.start()
    time.sleep(3)  # the three are held by now, even on a busy machine
    busy = httpx.get(f"{url}/api/sagas/x/result", params={"wait": 8}, timeout=30)
    assert (busy.status_code, _code(busy)) == (503, "server_busy")
    assert busy.headers["retry-after"] == "1"
    assert "SAGA_SERVER_MAX_WAITING" in busy.json()["hint"]
    # everything else is answered meanwhile, a poll without waiting too
    started = time.monotonic()
    assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
    assert httpx.get(f"{url}/api/sagas/x/result", timeout=5).json()["done"] is False
    assert time.monotonic() - started < 3
    with closing(HttpBackend(url)) as backend:
        with pytest.raises(ServerBusy) as busy_error:
            backend.get("/api/sagas/x/result", wait=8)
        assert busy_error.value.retryable
        # result() waits on by polling, at the pace Retry-After asks
        started = time.monotonic()
        assert backend.wait_ended("x", 2.5)["status"] == "RUNNING"
        assert 2.4 < time.monotonic() - started < 8
    for thread in waiting:
        thread.join()
    assert answers == [200, 200, 200]


def test_every_read_is_bounded(server: tuple[str, Path]) -> None:
    url, _ = server
    api = httpx.Client(base_url=url, timeout=30)
    # a filter no saga fits: pages of at most SAGA_SERVER_SCAN_LIMIT rows read, each with
    # a cursor to go on from, until the end
    pages = 0
    cursor = None
    while True:
        page = api.get("/api/sagas", params={"attribute": "plan=none", "limit": 10,
                                             **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        assert page.json()["sagas"] == []
        pages += 1
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert pages == len(range(0, 30_000 + len(AWKWARD_IDS) + 2, 2000))  # 2000 rows a page
    # the same by id prefix
    prefixed = api.get("/api/sagas", params={"id_prefix": "bulk-", "status": "COMPLETED"})
    assert (prefixed.json()["sagas"], prefixed.json()["next_cursor"] is not None) == ([], True)
    # a history comes a page at a time (Link rel=next), the client reads them all
    first = api.get("/api/sagas/long-1/history")
    assert len(first.json()) == 1000
    assert "next" in first.links
    second = api.get(first.links["next"]["url"])
    assert second.json()[0]["seq"] == 1000
    with closing(HttpBackend(url)) as backend:
        assert len(backend.history("long-1")) == 2501
        assert len(backend.get("/api/dlq", reason="undecodable")) == 125
    # dead letters too, and their number comes from a counter
    letters = api.get("/api/dlq", params={"limit": 100})
    assert len(letters.json()) == 100
    assert "next" in letters.links
    assert "value_b64" not in letters.json()[0]
    assert api.get("/api/stats").json()["dead_letters"] == 250
    assert _code(api.get("/api/sagas/long-1/history", params={"cursor": "x"})) \
        == "invalid_value"
    # bulk: a page of matches per request, with the cursor to go on
    dry = api.post("/api/bulk/cancel", json={"filter": {"id_prefix": "bulk-"}, "limit": 7,
                                             "dry_run": True}).json()
    assert len(dry["matched"]) == 7
    assert dry["next_cursor"]
    api.close()


def test_every_refusal_has_a_code_the_client_maps_to_its_error(
        server: tuple[str, Path]) -> None:
    url, _ = server
    api = httpx.Client(base_url=url, timeout=30)
    refusals = {
        "bad_request": api.post("/api/sagas", content=b"{not json",
                                headers={"content-type": "application/json"}),
        "unsupported_media_type": api.post("/api/sagas", content=b"{}",
                                           headers={"content-type": "text/plain"}),
        "invalid_request": api.post("/api/sagas", json={"type": "order"}),
        "unknown_saga_type": api.post("/api/sagas", json={"type": "teleport", "id": "t"}),
        "saga_not_found": api.get("/api/sagas/nobody"),
        "schedule_not_found": api.get("/api/schedules/nobody"),
        "dead_letter_not_found": api.get("/api/dlq/letters/0:99999"),
        "no_such_route": api.get("/api/nothing"),
        "method_not_allowed": api.put("/api/sagas", json={}),
        "too_large": api.post("/api/sagas", json={"type": "order", "id": "b",
                                                  "input": "x" * 700_000}),
        "invalid_value": api.get("/api/sagas", params={"cursor": "***"}),
        "unencodable": api.post("/api/sagas/x/signals/go",
                                content=b'{"payload": 123456789012345678901234}',
                                headers={"content-type": "application/json"}),
    }
    for code, response in refusals.items():
        assert _code(response) == code, (code, response.text)
        assert response.status_code < 500
    assert refusals["method_not_allowed"].headers["allow"]
    assert {c.value for c in ErrorCode} >= set(refusals)
    # the client raises by code, not by wording
    backend = HttpBackend(url)
    for call, error in ((lambda: backend.start("teleport", "t", None, 1), UnknownSagaType),
                        (lambda: backend.summary("nobody"), SagaNotFound),
                        (lambda: backend.get("/api/sagas", cursor="***"), Exception)):
        with pytest.raises(error):
            call()
    with pytest.raises(InvalidRequest):
        backend.post("/api/dlq/redrive", {})
    backend.close()
    api.close()


def test_tokens_refuse_with_their_codes(index_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "index"
    subprocess.run(["cp", "-r", str(index_dir), str(copy)], check=True)
    with offline_server(copy, tmp_path / "sent.jsonl", env={
            "SAGA_API_READ_TOKENS": "r-1", "SAGA_API_OPERATE_TOKENS": "o-1"}) as url:
        anonymous = httpx.post(f"{url}/api/sagas/x/cancel", json={}, timeout=10)
        assert (anonymous.status_code, _code(anonymous)) == (401, "unauthenticated")
        reader = httpx.post(f"{url}/api/sagas/x/cancel", json={}, timeout=10,
                            headers={"authorization": "Bearer r-1"})
        assert (reader.status_code, _code(reader)) == (403, "forbidden")
        # a refused caller's big body is read and dropped: the answer comes through
        big = urllib.request.Request(f"{url}/api/sagas", data=b"{" + b" " * 3_000_000 + b"}",
                                     headers={"content-type": "application/json"})
        assert _urlopen_refused(big) == (401, "unauthenticated")
        backend = HttpBackend(url, token="r-1")
        with pytest.raises(AccessDenied):
            backend.send("x", CancelSaga("no"))
        assert backend.summary("x")["saga_id"] == "x"
        backend.close()


def test_the_recent_activity_is_bounded() -> None:
    from saga.engine.state import SagaState, apply
    from saga.server.recent import RecentActivity

    recent = RecentActivity(minutes=1)
    now = int(time.time() * 1000)
    state = SagaState("r")
    state = apply(state, ev.Entry("r", 0, now, ev.SagaStarted("order", 1, None)))
    # entries stamped far in the future (a skewed or hostile writer) are not kept
    for n in range(1000):
        recent.observe(ev.Entry("r", 1, now + 3_600_000 * (n + 1),
                                ev.SagaStarted("order", 1, None)), state)
    assert len(recent._buckets) == 0
    # a million steps answered in one bucket hold a few counters, not a million numbers
    issued = apply(state, ev.Entry("r", 1, now - 1000, ev.CommandIssued(
        0, "c-0", "payments", "charge", ev.CommandKind.ACTION, 1, None)))
    reply = ev.CommandCompleted("c-0", 0, ev.CommandKind.ACTION, {})
    for n in range(20_000):
        recent.observe(ev.Entry("r", 2, now - n % 500, reply), issued)
    assert max(len(b.steps) for b in recent._buckets.values()) < 400
    shown = [row for row in recent.series() if row["steps"]]
    assert sum(row["steps"] for row in shown) == 20_000
    assert all(500 <= row["step_p99_ms"] <= 1000 for row in shown)


def test_the_console_names_every_saga_by_its_own_id(server: tuple[str, Path]) -> None:
    """The console in Chromium: a saga whose id holds %, /, ?, #, spaces or UTF-8 opens
    as itself from the list, and its Cancel reaches it and no other."""
    from playwright.sync_api import expect, sync_playwright

    from tests.saga.server.test_console import CHROMIUM_ARGS, chromium

    url, sent_file = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(f"{url}/#/sagas?id_prefix=o")
        rows = page.get_by_test_id("saga-rows")
        expect(rows).to_contain_text("o%2D1", timeout=20_000)
        page.locator("tr.row", has_text="o%2D1").click()
        expect(page.get_by_test_id("saga-id")).to_have_text("o%2D1")
        for saga_id in ("o%2D1", "a/b", "x/cancel", "q?x=1", "h#frag", "sp ace", "é-ü-日本",
                        "../x", "%", "semi;colon"):
            page.goto(f"{url}/#/sagas/{quote(saga_id, safe='')}")
            expect(page.get_by_test_id("saga-id")).to_have_text(saga_id, timeout=20_000)
            page.get_by_test_id("cancel").click()
            before = len(sent(sent_file))
            page.get_by_test_id("dialog-ok").click()
            deadline = time.monotonic() + 20
            while len(sent(sent_file)) == before:
                assert time.monotonic() < deadline, f"no cancel sent for {saga_id!r}"
                page.wait_for_timeout(100)
            [acted] = sent(sent_file)[before:]
            assert acted["saga_id"] == saga_id
            assert "cancelled from the console" in acted["value"]
        browser.close()
