"""Recorded histories replayed against new code: saga.testing's helpers and
`saga verify-replay --from` share saga/engine/replay.py."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from saga.engine.replay import journal_line
from saga.errors import HistoryError
from saga.testing import Reply, SagaTestEnv, assert_replays, load_history, load_journal, replay
from tests.saga.testing.flows import FLOWS, greeter_changed, greeter_v1
from tests.saga.testing.test_env import EXAMPLES, order, shop

ROOT = Path(__file__).resolve().parents[3]
Factory = Callable[..., SagaTestEnv]


async def test_a_saga_history_file_replays(saga_env_factory: Factory, tmp_path: Path) -> None:
    env = saga_env_factory(FLOWS)
    env.mock("bank", "debit", Reply.ok({"id": 1}))
    env.mock("ledger", "record", Reply.ok())
    await env.result((await env.start("transfer", "t-1", {"amount": 3})).saga_id)
    path = tmp_path / "t-1.json"  # what `saga history t-1 --json > t-1.json` writes
    path.write_bytes(orjson.dumps(env.history("t-1")))
    history = load_history(path)
    assert history.saga_id == "t-1"
    assert history.state() == env.state("t-1")
    assert assert_replays(history, FLOWS).checked == 1

    wrong = tmp_path / "t-2.json"
    wrong.write_bytes(path.read_bytes())
    with pytest.raises(HistoryError, match="holds commands and timers of t-1"):
        load_history(wrong)
    assert load_history(wrong, saga_id="t-1").saga_id == "t-1"


async def test_a_history_that_continued_as_new_needs_its_type(env_of_examples: SagaTestEnv
                                                              ) -> None:
    env = env_of_examples
    await env.result((await env.start("subscription", "s-1", {
        "customer": "c-1", "plan": "basic", "amount_cents": 900, "period_s": 60,
        "cycles": 2})).saga_id)
    rows = env.history("s-1")
    assert rows[0]["type"] == "SagaContinued"
    with pytest.raises(HistoryError, match=r"pass its type"):
        load_history(rows, saga_id="s-1").state()
    history = load_history(rows, saga_id="s-1", saga_type="subscription")
    assert history.state().result == env.state("s-1").result
    assert replay(history, EXAMPLES).ok


async def test_a_journal_dump_replays_and_a_changed_workflow_diverges(
        saga_env_factory: Factory, tmp_path: Path) -> None:
    env = saga_env_factory(greeter_v1())
    env.mock("bank", "debit", Reply.ok())
    env.mock("bank", "old-step", Reply.ok())
    for saga_id in ("g-1", "g-2"):
        await env.start("greeter", saga_id)
    await env.signal("g-2", "go")
    dump = tmp_path / "journal.jsonl"
    dump.write_bytes(b"".join(journal_line(e) + b"\n" for s in env.sagas()
                              for e in env.journal(s)))
    histories = load_journal(dump)
    assert [h.saga_id for h in histories] == ["g-1", "g-2"]
    assert assert_replays(histories, greeter_v1()).checked == 2
    with pytest.raises(AssertionError) as diverged:
        assert_replays(histories, greeter_changed())
    assert "g-1 (greeter, WAITING): step 0: the journal has a call to bank.debit, the code " \
           "now calls bank.credit" in str(diverged.value)
    assert "2 histories replayed, 2 would diverge" in str(diverged.value)
    assert [d.saga_id for d in replay(histories, greeter_changed()).diverging] == ["g-1", "g-2"]


def test_a_damaged_dump_says_where(tmp_path: Path) -> None:
    dump = tmp_path / "journal.jsonl"
    dump.write_text('{"saga_id": "x", "seq": 0, "at_ms": 0, "type": "SagaStarted", "body": '
                    '{"saga_type": "t", "version": 1, "input": null}}\nnot json\n')
    with pytest.raises(HistoryError, match="line 2 of the journal dump is not JSON"):
        load_journal(dump)
    with pytest.raises(HistoryError, match="begins at entry 3"):
        load_history([{"seq": 3, "at_ms": 0, "type": "WaitStarted", "step": 1,
                       "signal": "go"}], saga_id="x").state()
    with pytest.raises(HistoryError, match="unknown journal event type 'Nope'"):
        load_history([{"seq": 0, "at_ms": 0, "type": "Nope"}], saga_id="x")


async def test_verify_replay_reads_a_dump_with_no_kafka(saga_env_factory: Factory,
                                                        tmp_path: Path) -> None:
    # tests/versions_v1.py is the greeter version 1 the CLI loads; these histories
    # were written by other code under the same name and version
    env = saga_env_factory(greeter_changed())
    env.mock("bank", "credit", Reply.ok())
    await env.start("greeter", "g-1")
    dump = tmp_path / "journal.jsonl"
    dump.write_bytes(b"".join(journal_line(e) + b"\n" for e in env.journal("g-1")))

    def verify(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "saga.cli.main", "verify-replay",
                               "--from", str(dump), *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=60, check=False)

    diverging = verify("--workflows", "tests.versions_v1", "--json")
    assert diverging.returncode == 1, diverging.stderr
    assert json.loads(diverging.stdout) == {"checked": 1, "diverging": [{
        "saga_id": "g-1", "type": "greeter", "status": "WAITING",
        "divergence": "step 0: the journal has a call to bank.credit, the code now calls "
                      "payments.charge"}]}
    fine = verify("--workflows", "tests.saga.testing.flows")
    assert fine.returncode == 1  # flows registers no greeter in the default registry
    assert "workflow 'greeter' version 1 is not registered" in fine.stdout
    missing = subprocess.run([sys.executable, "-m", "saga.cli.main", "verify-replay",
                              "--from", str(tmp_path / "none.jsonl")], cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=False)
    assert missing.returncode == 2
    assert "saga: next: name a file written by `saga verify-replay --dump`" in missing.stderr


@pytest.fixture
def env_of_examples(saga_env_factory: Factory) -> SagaTestEnv:
    return saga_env_factory(EXAMPLES, services=shop())


async def test_the_histories_of_the_examples_replay(env_of_examples: SagaTestEnv) -> None:
    env = env_of_examples
    for saga_id, sku in (("o-1", "sku-1"), ("o-2", "sku-rare")):
        await env.start("order", saga_id, order(saga_id, sku))
    await env.advance(env.timers()[0].due - env.now())
    histories = load_journal(journal_line(e) for s in env.sagas() for e in env.journal(s))
    assert assert_replays(histories, EXAMPLES).checked == 2
