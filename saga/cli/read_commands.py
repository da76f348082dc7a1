"""`saga status|history|list|timers`: reading sagas through the visibility server's API
when SAGA_API_URL (or --api) names one, from any machine; else from the coordinators'
projections on this machine (opened read-only while they run)."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

import orjson

from saga.cli.common import http_api
from saga.cli.output import emit_json, table
from saga.cli.timer_report import timer_report
from saga.config import Settings
from saga.engine.lifecycle import SagaStatus
from saga.errors import SagaError, SagaNotFound
from saga.store.local_projections import LocalProjections
from saga.store.visibility import ListQuery, parse_attributes

if TYPE_CHECKING:
    from saga.client.backends import HttpBackend


def register(commands: Any) -> None:
    status = commands.add_parser("status", help="one saga's status")
    status.add_argument("saga_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=saga_status)
    history = commands.add_parser("history", help="one saga's journal, in order")
    history.add_argument("saga_id")
    history.add_argument("--json", action="store_true")
    history.set_defaults(handler=saga_history)
    listing = commands.add_parser("list", help="sagas, optionally by status")
    listing.add_argument("--status", type=str.upper, choices=[s.value for s in SagaStatus])
    listing.add_argument("--type")
    listing.add_argument("--version", type=int, help="only sagas started at this version")
    listing.add_argument("--attribute", action="append", default=[], metavar="KEY=VALUE",
                         help="only sagas whose attributes (ctx.set_attributes) hold this "
                         "value, JSON or text; repeatable")
    listing.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=saga_list)
    timers = commands.add_parser("timers", help="pending durable timers (per partition here; "
                                 "the earliest due through the API)")
    timers.add_argument("--limit", type=int, default=100, help="API: timers listed")
    timers.add_argument("--json", action="store_true")
    timers.set_defaults(handler=saga_timers)


def api(settings: Settings) -> HttpBackend | None:
    """The visibility server's API, when one is configured."""
    return http_api(settings) if settings.api_url else None


def local(settings: Settings) -> LocalProjections:
    try:
        return LocalProjections(settings)
    except SagaError as exc:
        raise SagaError(exc.message, hint="on another machine than the coordinators, set "
                        "SAGA_API_URL (or --api) to a `saga server`; " + (exc.hint or "")
                        ) from exc


def saga_status(args: argparse.Namespace, settings: Settings) -> int:
    remote = api(settings)
    if remote is not None:
        summary = remote.summary(args.saga_id)
    else:
        projections = local(settings)
        try:
            state = projections.get(args.saga_id)
        finally:
            projections.close()
        if state is None:
            raise SagaNotFound(f"no saga {args.saga_id!r} in the local projections",
                               hint="check the id with `saga list`; a saga just started may "
                               "take a moment to appear")
        summary = state.summary()
    if args.json:
        emit_json(summary)
    else:
        for key in ("saga_id", "type", "status", "result", "error", "last_error",
                    "waiting_for", "in_flight", "events"):
            print(f"{key:12} {summary[key]}")
    return 0


def saga_history(args: argparse.Namespace, settings: Settings) -> int:
    remote = api(settings)
    if remote is not None:
        rows = remote.history(args.saga_id)
    else:
        projections = local(settings)
        try:
            entries = projections.history(args.saga_id)
        finally:
            projections.close()
        if not entries:
            raise SagaNotFound(f"no history for saga {args.saga_id!r}",
                               hint="check the id with `saga list`")
        rows = [e.row() for e in entries]
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            details = {k: v for k, v in row.items() if k not in ("seq", "at_ms", "type")}
            print(f"{row['seq']:>4}  {row['type']:<22} "
                  f"{orjson.dumps(details).decode()[:160]}")
    return 0


def _list_query(args: argparse.Namespace, limit: int = 0,
                cursor: str | None = None) -> ListQuery:
    return ListQuery(SagaStatus(args.status) if args.status else None, args.type,
                     limit=limit, cursor=cursor, version=args.version,
                     attributes=parse_attributes(args.attribute))


def saga_list(args: argparse.Namespace, settings: Settings) -> int:
    remote = api(settings)
    if remote is not None:
        summaries = _all_pages(remote, args)
    else:
        query = _list_query(args)
        projections = local(settings)
        try:
            states = sorted(projections.states(), key=lambda s: s.saga_id)
        finally:
            projections.close()
        summaries = [summary for summary in (s.summary() for s in states)
                     if query.takes(summary)]
        if args.limit:
            summaries = summaries[:args.limit]
    if args.json:
        emit_json(summaries)
    else:
        print(table(["saga_id", "type", "version", "status", "events", "error"],
                    [[s["saga_id"], s["type"], s.get("version", ""), s["status"] or "",
                      s["events"], (s["error"] or s["last_error"] or "")[:60]]
                     for s in summaries]))
        print(f"{len(summaries)} saga(s)")
    return 0


def _all_pages(remote: HttpBackend, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every saga the filters take (up to --limit), page by page, newest first."""
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        want = 1000 if not args.limit else min(1000, args.limit - len(out))
        page = remote.listing(_list_query(args, limit=want, cursor=cursor))
        out.extend(page.summaries)
        cursor = page.next_cursor
        if cursor is None or (args.limit and len(out) >= args.limit):
            return out


def saga_timers(args: argparse.Namespace, settings: Settings) -> int:
    remote = api(settings)
    if remote is not None:
        report = remote.get("/api/timers", limit=args.limit if args.limit else 100)
        if args.json:
            emit_json(report)
        else:
            print(table(["due", "saga_id", "timer_id"],
                        [[_clock(t["due_ms"], report["now_ms"]), t["saga_id"], t["timer_id"]]
                         for t in report["timers"]]))
            print(f"{report['pending']} pending, {report['overdue']} overdue, next due "
                  f"{_clock(report['next_due_ms'], report['now_ms'])}")
        return 0
    now_ms = int(time.time() * 1000)
    partitions = timer_report(settings, now_ms)
    totals = {"pending": sum(p["pending"] for p in partitions),
              "overdue": sum(p["overdue"] for p in partitions),
              "next_due_ms": min((p["next_due_ms"] for p in partitions
                                  if p["next_due_ms"] is not None), default=None)}
    if args.json:
        emit_json({"now_ms": now_ms, **totals, "partitions": partitions})
        return 0

    def when(ms: int | None) -> str:
        return _clock(ms, now_ms)

    print(table(["partition", "pending", "overdue", "next due"],
                [[p["partition"], p["pending"], p["overdue"], when(p["next_due_ms"])]
                 for p in partitions]))
    print(f"{totals['pending']} pending, {totals['overdue']} overdue, next due "
          f"{when(totals['next_due_ms'])}")
    return 0


def _clock(ms: int | None, now_ms: int) -> str:
    if ms is None:
        return "-"
    clock = time.strftime("%H:%M:%S", time.localtime(ms / 1000))
    return f"{clock} ({(ms - now_ms) / 1000:+.1f}s)"
