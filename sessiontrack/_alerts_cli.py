"""``sessiontrack alerts``: list, add and remove alert rules, list recent alerts, and
evaluate and deliver from a process of its own (the ``alerts`` consumer group)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._stopping import until_terminated
from .errors import AlertRuleNotFound, InvalidParameter
from .notify._alert_service import AlertService
from .notify._rules import AlertRule, rule_json
from .store import SQLAlchemyStore

Opener = Callable[[str, str], Awaitable[SQLAlchemyStore]]


class AlertsCommandError(Exception):
    """A refused argument: the CLI prints it and exits 2."""


def _rule_line(rule: AlertRule) -> str:
    bots = ",".join(rule.chatbot_ids) or "all chatbots"
    params = ", ".join(f"{k}={v}" for k, v in rule.params.items() if v not in (None, []))
    targets = ",".join(t.type for t in rule.targets) or "no targets"
    return f"{rule.id}  {rule.kind}  {rule.name!r}  [{params}; {bots}; {targets}; {rule.source}]"


def _alert_line(alert: dict[str, Any]) -> str:
    states = ",".join(f"{d['type']}:{d['state']}" for d in alert["deliveries"]) or "-"
    resolved = f"  resolved {alert['resolvedAt']}" if alert["resolvedAt"] else ""
    head = f"{alert['id']}  {alert['firedAt']}  {alert['title']}"
    return f"{head}  {alert['link']}  [{states}]{resolved}"


def _body(text: str) -> dict[str, Any]:
    if text.startswith("@"):
        try:
            text = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise AlertsCommandError(f"RULE: cannot read {text[1:]}: {exc.strerror}") from None
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AlertsCommandError(f"RULE: not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise AlertsCommandError("RULE: must be a JSON object")
    return body


async def _rules(service: AlertService, args: argparse.Namespace) -> None:
    rules = await service.list_rules()
    if args.json:
        print(json.dumps([rule_json(r) for r in rules], indent=2, ensure_ascii=False))
        return
    for rule in rules:
        print(_rule_line(rule))
    if not rules:
        print("no alert rules")


async def _add(service: AlertService, args: argparse.Namespace) -> None:
    rule, secrets = await service.create_rule(_body(args.rule))
    print(_rule_line(rule))
    for i, secret in enumerate(secrets):
        if secret is not None:
            print(
                f"targets[{i}] secret: {secret}  (shown once: keep it in the receiver's settings)"
            )


async def _remove(service: AlertService, args: argparse.Namespace) -> None:
    await service.remove_rule(args.id)
    print(f"alert rule {args.id} removed")


async def _list(service: AlertService, args: argparse.Namespace) -> None:
    alerts = await service.alerts(limit=args.limit, chatbot_id=args.chatbot, rule_id=args.rule)
    if args.json:
        print(json.dumps(alerts, indent=2, ensure_ascii=False))
        return
    for alert in alerts:
        print(_alert_line(alert))
    if not alerts:
        print("no alerts")


async def _run(service: AlertService, args: argparse.Namespace) -> None:
    from .notify import Alerts

    group = Alerts(
        dashboard_url=args.dashboard_url,
        evaluate_interval=args.evaluate_interval,
        poll_interval=args.poll_interval,
    )
    sys.stderr.write(
        "evaluating alert rules and delivering alerts (when this process holds the lease; "
        "Ctrl-C or SIGTERM stops)\n"
    )
    await until_terminated(lambda: group.run(service.store))


_ACTIONS: dict[str, Callable[[AlertService, argparse.Namespace], Awaitable[None]]] = {
    "rules": _rules,
    "add": _add,
    "remove": _remove,
    "list": _list,
    "run": _run,
}


async def alerts_command(args: argparse.Namespace, open_store: Opener) -> None:
    store = await open_store(args.database_url, args.prefix)
    try:
        service = AlertService(store, dashboard_url=getattr(args, "dashboard_url", None))
        try:
            await _ACTIONS[args.alerts_command](service, args)
        except InvalidParameter as exc:
            flag = {"ruleId": "ID", "chatbotId": "--chatbot", "limit": "--limit"}.get(
                exc.field, f"RULE: {exc.field}"
            )
            raise AlertsCommandError(f"{flag}: {exc.message}") from None
        except AlertRuleNotFound as exc:
            raise AlertsCommandError(str(exc)) from None
    finally:
        await store.close()


def add_parsers(
    sub: Any,
    common: Callable[[argparse.ArgumentParser], None],
    run: Callable[[argparse.Namespace], Awaitable[None]],
) -> None:
    group = sub.add_parser(
        "alerts",
        help="manage alert rules and list recent alerts (see docs/notifications.md)",
        description="List, add and remove the alert rules stored in the database and list "
        "the alerts they fired; the process running sessiontrack.notify.Alerts evaluates "
        "and delivers them.",
    )
    commands = group.add_subparsers(dest="alerts_command", required=True)
    r = commands.add_parser("rules", help="every rule (the code's and the API's)")
    common(r)
    r.add_argument("--json", action="store_true", help="as GET /alerts/rules answers")
    a = commands.add_parser(
        "add",
        help="add a rule: its JSON as POST /alerts/rules takes it",
        description='RULE is JSON, or @FILE: {"name": "expired", "kind": "session_ended", '
        '"params": {"statuses": ["expired"]}, "targets": [{"type": "slack", "url": "..."}]}',
    )
    common(a)
    a.add_argument("rule", metavar="RULE", help="the rule as JSON, or @file.json")
    d = commands.add_parser("remove", help="delete a rule made through the API or the CLI")
    common(d)
    d.add_argument("id", metavar="ID", help="the rule's id")
    lst = commands.add_parser("list", help="recent alerts, newest first")
    common(lst)
    lst.add_argument("--limit", type=int, default=20, help="how many, 1-500 (default 20)")
    lst.add_argument("--chatbot", help="only this chatbot's alerts")
    lst.add_argument("--rule", help="only this rule's alerts (its id)")
    lst.add_argument("--json", action="store_true", help="as GET /alerts answers")
    w = commands.add_parser(
        "run",
        help="evaluate the rules and deliver alerts from this process (no tracker needed)",
        description="Run the alerts consumer group on its own: it takes the lease when no "
        "other process holds it, then evaluates the rules stored in the database and works "
        "through the outbox.",
    )
    common(w)
    w.add_argument("--dashboard-url", help="the dashboard's address, for the alerts' links")
    w.add_argument("--evaluate-interval", type=float, default=30.0, help="seconds (default 30)")
    w.add_argument("--poll-interval", type=float, default=1.0, help="seconds (default 1)")
    group.set_defaults(run=run)
