"""Alert rules (sessiontrack.notify.Alerts) on both backends, against real receivers: an
HTTP server on 127.0.0.1 for the webhook, Slack and Teams targets and aiosmtpd for
e-mail. Session ends, stuck sessions, node rates crossing a threshold, retries, a restart
with deliveries still in the outbox, and the /alerts API's checks and tenancy."""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

import sessiontrack
from sessiontrack import cli
from sessiontrack.notify import SMTP, AlertRule, Alerts, AlertService, Target, verify
from sessiontrack.web import create_app
from tests.alert_helpers import HttpReceiver, Logins, consumer_host, eventually, smtp_server
from tests.conftest import POSTGRES_URL, drop_prefixed_tables, require_postgres
from tests.web_helpers.live import free_port, wait_until

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent
SECRET = "alert-secret-0123456789"
DASHBOARD = "https://ops.example/api/chatbot-sessions/ui/"


def fast_alerts(rules: list[AlertRule], **options: Any) -> Alerts:
    settings: dict[str, Any] = {
        "dashboard_url": DASHBOARD,
        "evaluate_interval": 0.1,
        "refresh_interval": 0.1,
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "poll_interval": 0.1,
        "lease_retry": 0.2,
        "lease_check": 0.5,
    }
    settings.update(options)
    return Alerts(rules, **settings)


def host(
    url: str, prefix: str, alerts: Alerts | None = None
) -> AbstractAsyncContextManager[sessiontrack.Tracker]:
    return consumer_host(url, prefix, alerts, leading=True)


def start(tracker: sessiontrack.Tracker, chatbot: str = "bot") -> str:
    sid = sessiontrack.new_session_id()
    tracker.plugin_manager.hook.sessiontrack_session_started(session_id=sid, chatbot_id=chatbot)
    return sid


async def service_alerts(tracker: sessiontrack.Tracker, **options: Any) -> list[dict[str, Any]]:
    return await AlertService(tracker.store, dashboard_url=DASHBOARD).alerts(limit=500, **options)


# --- a session ended: every target, once per session ----------------------------------


async def test_session_end_alerts_reach_every_target_once(database_url: str, prefix: str) -> None:
    receiver = HttpReceiver()
    with smtp_server() as (smtp_port, mailbox):
        async with receiver.serving() as base:
            targets = [
                Target.webhook(f"{base}/hook", SECRET),
                Target.slack(f"{base}/slack"),
                Target.teams(f"{base}/teams"),
                Target.email("oncall@example.com"),
            ]
            ended = AlertRule.session_ended(
                "ended badly", statuses=["expired", "stopped"], targets=targets
            )
            errors = AlertRule.session_ended(
                "errors of bot b",
                reasons=["error"],
                chatbot_ids=["b"],
                targets=[Target.webhook(f"{base}/hook", SECRET)],
            )
            smtp = SMTP(host="127.0.0.1", port=smtp_port, sender="alerts@example.com")
            alerts = fast_alerts([ended, errors], smtp=smtp)
            async with host(database_url, prefix, alerts) as tracker:
                hook = tracker.plugin_manager.hook
                expired, stopped, fine = start(tracker), start(tracker), start(tracker)
                failed_b, failed_a = start(tracker, "b"), start(tracker, "a")
                hook.sessiontrack_session_completed(session_id=expired, status="expired")
                hook.sessiontrack_session_completed(  # a header injection, tried
                    session_id=stopped, status="stopped", reason="operator\nBcc: x@example.com"
                )
                hook.sessiontrack_session_completed(session_id=fine)
                for sid in (failed_b, failed_a):
                    hook.sessiontrack_session_completed(session_id=sid, reason="error")
                await tracker.flush()
                await wait_until(lambda: len(mailbox) == 2 and len(receiver.posts) == 7, 10)
                await anyio.sleep(0.5)  # nothing more comes
                assert len(receiver.posts) == 7 and len(mailbox) == 2
                listed = await service_alerts(tracker)
                lag = await tracker.store.cursors("alerts")
                assert lag == {"alerts": await tracker.store.last_seq()}

    by_session = {a["sessionId"]: a for a in listed}
    assert set(by_session) == {expired, stopped, failed_b}
    assert by_session[expired]["link"] == f"#/sessions/{expired}"
    assert by_session[expired]["url"] == f"{DASHBOARD}#/sessions/{expired}"
    assert by_session[stopped]["details"]["reason"] == "operator\nBcc: x@example.com"
    for alert in listed:
        assert {d["state"] for d in alert["deliveries"]} == {"delivered"}
    hooks = receiver.of("/hook")
    assert len(hooks) == 3
    for post in hooks:
        assert verify(
            SECRET,
            post.raw,
            post.headers["x-sessiontrack-signature"],
            post.headers["x-sessiontrack-timestamp"],
        )
        assert post.headers["idempotency-key"].startswith("alert-")
    sent = {p.body["alert"]["sessionId"]: p.body["alert"] for p in hooks}
    assert set(sent) == {expired, stopped, failed_b}
    assert sent[failed_b]["details"]["rule"] == "errors of bot b"
    slack = [p.body for p in receiver.of("/slack")]
    assert all(s["text"] and s["blocks"][0]["type"] == "header" for s in slack)
    buttons = [s["blocks"][-1]["elements"][0]["url"] for s in slack]
    assert sorted(buttons) == sorted(f"{DASHBOARD}#/sessions/{s}" for s in (expired, stopped))
    teams = [p.body for p in receiver.of("/teams")]
    card = teams[0]["attachments"][0]
    assert teams[0]["type"] == "message"
    assert card["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert card["content"]["actions"][0]["url"].startswith(DASHBOARD + "#/sessions/")
    assert all(m["Bcc"] is None and "\n" not in m["Subject"] for m in mailbox)
    mail = mailbox[0]
    assert mail["To"] == "oncall@example.com" and mail["From"] == "alerts@example.com"
    assert mail["Subject"].startswith("[sessiontrack] Session ended")
    assert f"{DASHBOARD}#/sessions/" in mail.get_content()


# --- stuck in a status ---------------------------------------------------------------


async def test_a_stuck_session_fires_once_per_status_spell(database_url: str, prefix: str) -> None:
    receiver = HttpReceiver()
    async with receiver.serving() as base:
        rule = AlertRule.stuck(
            "stuck in flow",
            status="waiting_flow",
            longer_than=0.4,
            targets=[Target.webhook(f"{base}/hook", SECRET)],
        )
        async with host(database_url, prefix, fast_alerts([rule])) as tracker:
            hook = tracker.plugin_manager.hook
            stuck, moved_on = start(tracker), start(tracker)
            for sid in (stuck, moved_on):
                hook.sessiontrack_status_changed(session_id=sid, status="waiting_flow")
            await tracker.flush()
            await anyio.sleep(0.1)
            hook.sessiontrack_status_changed(session_id=moved_on, status="running")
            await tracker.flush()
            await wait_until(lambda: len(receiver.posts) == 1, 5)
            await anyio.sleep(0.6)  # several evaluations later: still one
            assert len(receiver.posts) == 1
            # a new spell in the same status fires again, after the duration
            hook.sessiontrack_status_changed(session_id=stuck, status="running")
            hook.sessiontrack_status_changed(session_id=stuck, status="waiting_flow")
            await tracker.flush()
            await anyio.sleep(0.2)
            assert len(receiver.posts) == 1
            await wait_until(lambda: len(receiver.posts) == 2, 5)
            listed = await service_alerts(tracker)
    alerts = [p.body["alert"] for p in receiver.posts]
    assert [a["sessionId"] for a in alerts] == [stuck, stuck]
    assert {a["link"] for a in alerts} == {f"#/sessions/{stuck}"}
    assert alerts[0]["details"]["status"] == "waiting_flow"
    assert len(listed) == 2 and all(a["kind"] == "stuck" for a in listed)


# --- a node's drop-off and error rates --------------------------------------------------

FLOW = {
    "nodes": [
        {"id": "ask", "type": "question", "position": {"x": 0, "y": 0}, "data": {"label": "Ask"}},
        {"id": "done", "type": "end", "position": {"x": 0, "y": 90}, "data": {"label": "Done"}},
    ],
    "edges": [{"id": "e", "source": "ask", "target": "done"}],
}


def run(tracker: sessiontrack.Tracker, *, drop: bool, error: bool = False) -> None:
    hook = tracker.plugin_manager.hook
    sid = start(tracker)
    hook.sessiontrack_node_executed(session_id=sid, node_id="ask", error="boom" if error else None)
    if drop:
        hook.sessiontrack_session_completed(session_id=sid, status="expired")
        return
    hook.sessiontrack_node_executed(session_id=sid, node_id="done")
    hook.sessiontrack_session_completed(session_id=sid)


async def test_a_node_rate_fires_once_per_crossing(database_url: str, prefix: str) -> None:
    receiver = HttpReceiver()
    async with receiver.serving() as base:
        target = [Target.webhook(f"{base}/hook", SECRET)]
        drop = AlertRule.node_rate(
            "ask drop-off",
            chatbot_ids=["bot"],
            node_id="ask",
            threshold=0.5,
            min_sessions=4,
            window=timedelta(hours=1),
            targets=target,
        )
        errors = AlertRule.node_rate(
            "errors", chatbot_ids=["bot"], metric="error", threshold=0.2, min_sessions=4
        )
        async with host(database_url, prefix, fast_alerts([drop, errors])) as tracker:
            hook = tracker.plugin_manager.hook
            hook.sessiontrack_flow_registered(chatbot_id="bot", name="Bot", flow=FLOW)
            for _ in range(3):
                run(tracker, drop=True)
            await tracker.flush()
            await anyio.sleep(0.4)
            assert receiver.posts == []  # 3 sessions: under minSessions
            run(tracker, drop=True, error=True)
            await tracker.flush()
            await wait_until(lambda: len(receiver.posts) == 1, 5)
            await anyio.sleep(0.5)  # evaluated again and again: once per crossing
            assert len(receiver.posts) == 1
            first = await service_alerts(tracker)
            for _ in range(6):  # 4 of 10 dropped off: back under the threshold
                run(tracker, drop=False)
            await tracker.flush()

            async def resolved() -> bool:
                rows = await service_alerts(tracker, rule_id=drop.id)
                return rows[0]["resolvedAt"] is not None

            await eventually(resolved)
            for _ in range(8):  # 12 of 18: above again
                run(tracker, drop=True)
            await tracker.flush()
            await wait_until(lambda: len(receiver.posts) == 2, 5)
            listed = await service_alerts(tracker)
    kinds = {(a["details"]["rule"], a["nodeId"]) for a in first}
    # the error rule has no targets: recorded, listed, not sent
    assert kinds == {("ask drop-off", "ask"), ("errors", "ask")}
    alert = receiver.posts[0].body["alert"]
    assert alert["details"]["rate"] == 1.0 and alert["details"]["sessions"] == 4
    assert re.fullmatch(
        r"#/analytics\?chatbotId=bot&startDate=\d{4}-\d\d-\d\d&endDate=\d{4}-\d\d-\d\d&version=\w+",
        alert["link"],
    ), alert["link"]
    assert alert["url"].startswith(DASHBOARD + "#/analytics?chatbotId=bot")
    second = receiver.posts[1].body["alert"]
    assert second["details"]["sessions"] == 18 and second["details"]["rate"] == 0.6667
    assert len([a for a in listed if a["ruleId"] == drop.id]) == 2


# --- delivery: retried with backoff, durable across a restart, never in the way ----------


async def test_failed_deliveries_are_retried_and_survive_a_restart(
    database_url: str, prefix: str
) -> None:
    port = free_port()
    receiver = HttpReceiver(status={"/slack": 503})
    rule = AlertRule.session_ended(
        "expired",
        statuses=["expired"],
        targets=[Target.webhook(f"http://127.0.0.1:{port}/hook", SECRET)],
    )
    async with host(database_url, prefix, fast_alerts([rule])) as tracker:
        sid = start(tracker)
        tracker.plugin_manager.hook.sessiontrack_session_completed(session_id=sid, status="expired")
        await tracker.flush()

        async def attempts() -> int:
            rows = await service_alerts(tracker)
            return rows[0]["deliveries"][0]["attempts"] if rows else 0

        async def retried() -> bool:  # the receiver is down: refused, retried
            return await attempts() >= 3

        await eventually(retried)
        down = (await service_alerts(tracker))[0]["deliveries"][0]
        assert down["state"] == "pending" and "ConnectError" in down["error"]
    # the host stopped with the delivery pending; the next one delivers it
    async with receiver.serving(port), host(database_url, prefix, fast_alerts([rule])) as tracker:
        await wait_until(lambda: len(receiver.of("/hook")) == 1, 5)
        await anyio.sleep(0.3)
        after = (await service_alerts(tracker))[0]
    assert len(receiver.posts) == 1 and receiver.posts[0].body["alert"]["sessionId"] == sid
    assert after["deliveries"][0]["state"] == "delivered"


async def test_a_target_that_keeps_failing_is_given_up_after_max_attempts(
    database_url: str, prefix: str
) -> None:
    receiver = HttpReceiver(status={"/slack": 500})
    async with receiver.serving() as base:
        rule = AlertRule.session_ended("all ends", targets=[Target.slack(f"{base}/slack")])
        alerts = fast_alerts([rule], max_attempts=3)
        async with host(database_url, prefix, alerts) as tracker:
            sid = start(tracker)
            tracker.plugin_manager.hook.sessiontrack_session_completed(session_id=sid)
            await tracker.flush()
            await wait_until(lambda: len(receiver.posts) == 3, 5)
            await anyio.sleep(0.5)
            delivery = (await service_alerts(tracker))[0]["deliveries"][0]
    assert len(receiver.posts) == 3
    assert delivery == {
        "type": "slack",
        "state": "failed",
        "attempts": 3,
        "error": "HTTP 500",
        "deliveredAt": None,
    }


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("starttls and login", None),
        ("wrong password", "535"),  # the server's refusal, as the delivery's error
        ("no starttls", "via TLS"),  # AUTH is offered over TLS only: no password in clear
        ("unknown CA", "CERTIFICATE_VERIFY_FAILED"),  # the certificate is verified
    ],
)
async def test_email_over_starttls_logs_in_and_verifies_the_server(
    database_url: str, prefix: str, tmp_path: Path, case: str, error: str | None
) -> None:
    ca = trustme.CA()
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(tls)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    logins = Logins("alerts", "s3cret")
    with smtp_server(tls=tls, logins=logins) as (smtp_port, mailbox):
        smtp = SMTP(
            host="127.0.0.1",
            port=smtp_port,
            sender="alerts@example.com",
            username="alerts",
            password="wrong" if case == "wrong password" else "s3cret",
            starttls=case != "no starttls",
            cert_bundle=None if case == "unknown CA" else str(bundle),
        )
        rule = AlertRule.session_ended("all ends", targets=[Target.email("oncall@example.com")])
        async with host(
            database_url, prefix, fast_alerts([rule], smtp=smtp, max_attempts=1)
        ) as tracker:
            sid = start(tracker)
            tracker.plugin_manager.hook.sessiontrack_session_completed(session_id=sid)
            await tracker.flush()

            async def settled() -> bool:
                rows = await service_alerts(tracker)
                return bool(rows) and rows[0]["deliveries"][0]["state"] != "pending"

            await eventually(settled, 10)
            delivery = (await service_alerts(tracker))[0]["deliveries"][0]
    if error is None:
        assert delivery["state"] == "delivered" and delivery["error"] is None
        assert [m["To"] for m in mailbox] == ["oncall@example.com"]
        assert sid in mailbox[0].get_content()
        assert logins.tried == [("alerts", True)]
    else:
        assert delivery["state"] == "failed" and error in delivery["error"]
        assert mailbox == []
        if case == "wrong password":  # (each mechanism the client tries: PLAIN, LOGIN)
            assert logins.tried and set(logins.tried) == {("alerts", False)}
        else:
            assert logins.tried == []
    assert "s3cret" not in repr(smtp)


async def test_a_slow_target_does_not_slow_ingestion(database_url: str, prefix: str) -> None:
    """Alerts are sent from the outbox by a task of their own: with a target taking 2 s
    to answer, 1,000 reports commit while its first answer is still awaited."""
    receiver = HttpReceiver(delay=2.0)
    async with receiver.serving() as base:
        rule = AlertRule.session_ended("every end", targets=[Target.slack(f"{base}/slack")])
        async with host(database_url, prefix, fast_alerts([rule], timeout=30.0)) as tracker:
            hook = tracker.plugin_manager.hook
            hook.sessiontrack_session_completed(session_id=start(tracker))
            await tracker.flush()
            await wait_until(lambda: len(receiver.posts) == 1, 5)  # answering, slowly
            for _ in range(500):
                sid = start(tracker)
                hook.sessiontrack_node_executed(session_id=sid, node_id="n")
            await tracker.flush()
            assert receiver.answered == 0  # the writer did not wait for the target
            assert tracker.stats.committed >= 1002


async def test_one_process_evaluates_at_a_time_and_another_takes_over(
    database_url: str, prefix: str
) -> None:
    """Two trackers on one database, each with the same rules: one leads (evaluates and
    delivers); when it stops, the other takes over from the same cursor."""
    receiver = HttpReceiver()
    async with receiver.serving() as base:
        rule = AlertRule.session_ended("ends", targets=[Target.slack(f"{base}/slack")])
        first, second = fast_alerts([rule]), fast_alerts([rule])
        stop, stopped = anyio.Event(), anyio.Event()

        async def leading_process() -> None:
            async with host(database_url, prefix, first):
                await stop.wait()
            stopped.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(leading_process)
            await wait_until(lambda: first.leading, 10)
            async with sessiontrack.Tracker(
                database_url, prefix=prefix, poll_interval=0.1, consumers=[second]
            ) as other:
                hook = other.plugin_manager.hook
                await anyio.sleep(0.6)
                assert first.leading and not second.leading
                hook.sessiontrack_session_completed(session_id=start(other))
                await other.flush()
                await wait_until(lambda: len(receiver.posts) == 1, 5)
                stop.set()  # the leader stops: the other takes over
                await stopped.wait()
                await wait_until(lambda: second.leading, 5)
                hook.sessiontrack_session_completed(session_id=start(other))
                await other.flush()
                await wait_until(lambda: len(receiver.posts) == 2, 5)
                await anyio.sleep(0.3)
    assert len(receiver.posts) == 2


# --- the API ----------------------------------------------------------------------------

PRINCIPALS = {
    "admin": sessiontrack.Principal(id="admin", can_manage=True),
    "tenant": sessiontrack.Principal(id="tenant", can_manage=True, chatbot_ids=frozenset({"a"})),
    "viewer": sessiontrack.Principal(id="viewer"),
}


def who(request: Any) -> sessiontrack.Principal | None:
    return PRINCIPALS.get(request.token or "")


async def test_alert_rules_through_the_api(database_url: str, prefix: str) -> None:
    code_rule = AlertRule.session_ended("code rule", statuses=["expired"])
    alerts = fast_alerts([code_rule])
    async with host(database_url, prefix, alerts) as tracker:
        app = create_app(tracker, authenticate=who)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as api:

            def as_(name: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {name}"}

            admin, tenant = as_("admin"), as_("tenant")
            assert (await api.get("/alerts/rules", headers=as_("viewer"))).status_code == 403
            assert (await api.get("/alerts", headers=as_("viewer"))).status_code == 403
            for body, field in [
                ({"kind": "stuck"}, "name"),
                ({"name": "x", "kind": "sometimes"}, "kind"),
                (
                    {"name": "x", "kind": "stuck", "params": {"status": "completed"}},
                    "params.status",
                ),
                (
                    {"name": "x", "kind": "stuck", "params": {"status": "running"}},
                    "params.longerThan",
                ),
                (
                    {"name": "x", "kind": "node_rate", "params": {"threshold": 2}},
                    "params.threshold",
                ),
                ({"name": "x", "kind": "node_rate", "params": {"threshold": 0.5}}, "chatbotIds"),
                (
                    {"name": "x", "kind": "session_ended", "targets": [{"type": "fax"}]},
                    "targets[0].type",
                ),
                (
                    {
                        "name": "x",
                        "kind": "session_ended",
                        "targets": [{"type": "slack", "url": "ftp://h"}],
                    },
                    "targets[0].url",
                ),
                (
                    {
                        "name": "x",
                        "kind": "session_ended",
                        "targets": [{"type": "email", "to": ["nope"]}],
                    },
                    "targets[0].to",
                ),
                ({"name": "x", "kind": "session_ended", "colour": "red"}, "colour"),
            ]:
                answer = await api.post("/alerts/rules", json=body, headers=admin)
                assert answer.status_code == 400, (body, answer.text)
                assert answer.json()["detail"][0]["field"] == field, answer.text
            stuck = {
                "name": "waiting too long",
                "kind": "stuck",
                "chatbotIds": ["a"],
                "params": {"status": "waiting_flow", "longerThan": 600},
                "targets": [
                    {"type": "webhook", "url": "http://127.0.0.1:9/hook"},
                    {"type": "teams", "url": "https://example.webhook.office.com/webhookb2/abcdef"},
                    {"type": "email", "to": ["ops@example.com"]},
                ],
            }
            created = await api.post("/alerts/rules", json=stuck, headers=tenant)
            assert created.status_code == 201, created.text
            rule = created.json()
            assert rule["secrets"][0].startswith("whsec_") and rule["secrets"][1:] == [None, None]
            assert rule["params"] == {"status": "waiting_flow", "longerThan": 600.0}
            assert rule["source"] == "api" and rule["createdBy"] == "tenant"
            assert rule["targets"][0]["secretHint"] == "…" + rule["secrets"][0][-4:]
            assert "abcdef" not in rule["targets"][1]["url"]  # the URL is the credential
            other = {**stuck, "chatbotIds": ["b"]}
            refused = await api.post("/alerts/rules", json=other, headers=tenant)
            assert refused.json()["detail"][0]["field"] == "chatbotIds"
            made_b = await api.post("/alerts/rules", json=other, headers=admin)
            assert made_b.status_code == 201
            names = [r["name"] for r in (await api.get("/alerts/rules", headers=admin)).json()]
            assert names == ["code rule", "waiting too long", "waiting too long"]
            seen = (await api.get("/alerts/rules", headers=tenant)).json()
            assert [r["id"] for r in seen] == [rule["id"]]  # not bot b's, nor the global one
            assert "secrets" not in seen[0]
            gone = await api.delete(f"/alerts/rules/{made_b.json()['id']}", headers=tenant)
            assert gone.status_code == 404  # another tenant's: not found
            bad = await api.delete("/alerts/rules/not-a-uuid", headers=admin)
            assert bad.status_code == 400 and bad.json()["detail"][0]["field"] == "ruleId"
            code = await api.delete(f"/alerts/rules/{code_rule.id}", headers=admin)
            assert code.status_code == 400 and "code" in code.json()["detail"][0]["message"]
            assert (
                await api.delete(f"/alerts/rules/{rule['id']}", headers=tenant)
            ).status_code == 204
            assert (
                await api.delete(f"/alerts/rules/{rule['id']}", headers=admin)
            ).status_code == 404

            # recent alerts, filtered by tenant
            hook = tracker.plugin_manager.hook
            for bot in ("a", "b"):
                sid = start(tracker, bot)
                hook.sessiontrack_session_completed(session_id=sid, status="expired")
            await tracker.flush()

            async def both() -> bool:
                return len((await api.get("/alerts", headers=admin)).json()) == 2

            await eventually(both)
            mine = (await api.get("/alerts", headers=tenant)).json()
            assert [a["chatbotId"] for a in mine] == ["a"]
            assert mine[0]["link"].startswith("#/sessions/") and mine[0]["ruleId"] == code_rule.id
            only_b = await api.get("/alerts", params={"chatbotId": "b"}, headers=tenant)
            assert only_b.json() == []
            by_rule = await api.get(
                "/alerts", params={"ruleId": code_rule.id, "limit": 1}, headers=admin
            )
            assert len(by_rule.json()) == 1
            older = await api.get(
                "/alerts", params={"before": by_rule.json()[0]["id"]}, headers=admin
            )
            assert len(older.json()) == 1
            for params, field in [
                ({"limit": "0"}, "limit"),
                ({"before": "x"}, "before"),
                ({"ruleId": "x"}, "ruleId"),
                ({"colour": "red"}, "colour"),
            ]:
                answer = await api.get("/alerts", params=params, headers=admin)
                assert answer.status_code == 400 and answer.json()["detail"][0]["field"] == field


# --- the CLI ----------------------------------------------------------------------------


def test_cli_manages_rules_and_lists_alerts(
    backend: str, tmp_path: Path, prefix: str, capsys: Any
) -> None:
    if backend == "postgresql":
        anyio.run(require_postgres)
        url = POSTGRES_URL
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    common = ["--database-url", url, "--prefix", prefix]
    try:
        assert cli.main(["migrate", *common]) == 0
        capsys.readouterr()
        assert cli.main(["alerts", "add", "{nope", *common]) == 2
        assert "RULE: not JSON" in capsys.readouterr().err
        bad = json.dumps({"name": "x", "kind": "stuck", "params": {"status": "done"}})
        assert cli.main(["alerts", "add", bad, *common]) == 2
        assert "RULE: params.status: must be an active status" in capsys.readouterr().err
        rule = {
            "name": "expired",
            "kind": "session_ended",
            "params": {"statuses": ["expired"]},
            "targets": [{"type": "webhook", "url": "http://127.0.0.1:9/hook"}],
        }
        (tmp_path / "rule.json").write_text(json.dumps(rule), encoding="utf-8")
        assert cli.main(["alerts", "add", f"@{tmp_path / 'rule.json'}", *common]) == 0
        out = capsys.readouterr().out
        rid = out.split()[0]
        assert "session_ended" in out and "targets[0] secret: whsec_" in out
        assert cli.main(["alerts", "rules", *common]) == 0
        listed = capsys.readouterr().out
        assert rid in listed and "whsec_" not in listed
        assert cli.main(["alerts", "rules", "--json", *common]) == 0
        assert json.loads(capsys.readouterr().out)[0]["params"] == {
            "statuses": ["expired"],
            "reasons": [],
        }
        assert cli.main(["alerts", "list", *common]) == 0
        assert capsys.readouterr().out == "no alerts\n"
        assert cli.main(["alerts", "list", "--limit", "0", *common]) == 2
        assert "--limit: must be an integer from 1 to 500" in capsys.readouterr().err
        assert cli.main(["alerts", "remove", rid, *common]) == 0
        capsys.readouterr()
        assert cli.main(["alerts", "remove", rid, *common]) == 2
        assert f"alert rule {rid} not found" in capsys.readouterr().err
        assert cli.main(["alerts", "remove", "x", *common]) == 2
        assert "ID: must be an alert rule id" in capsys.readouterr().err
    finally:
        if backend == "postgresql":
            anyio.run(drop_prefixed_tables, POSTGRES_URL, prefix)


# --- the example's demo posts its alerts to a local receiver ------------------------------


async def test_the_demo_posts_its_alerts_to_a_local_receiver(tmp_path: Path) -> None:
    receiver = HttpReceiver()
    async with receiver.serving() as base:
        port = free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "HELPDESK_ALERTS_URL": f"{base}/alerts"}
        env.pop("WHATSAPP_APP_SECRET", None)
        command = [sys.executable, "-m", "examples.helpdesk", "--port", str(port)]
        command += ["--database-url", f"sqlite:///{tmp_path / 'demo.db'}"]
        command += ["--customers", "12", "--idle-timeout", "2"]
        with open(tmp_path / "demo.log", "wb") as out:  # noqa: ASYNC230 - opened once
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)  # noqa: ASYNC220
        try:
            await wait_until(lambda: len(receiver.of("/alerts")) >= 1, 60)
        finally:
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(20):
                while proc.poll() is None:  # noqa: ASYNC110 - a child process
                    await anyio.sleep(0.05)
    log = (tmp_path / "demo.log").read_text()
    assert "alerts: posted to" in log, log
    post = receiver.of("/alerts")[0]
    alert = post.body["alert"]
    assert verify(
        "helpdesk-alerts-secret",
        post.raw,
        post.headers["x-sessiontrack-signature"],
        post.headers["x-sessiontrack-timestamp"],
    )
    assert alert["details"]["status"] in ("expired", "stopped")
    assert (
        alert["url"]
        == f"http://127.0.0.1:{port}/api/chatbot-sessions/ui/#/sessions/{alert['sessionId']}"
    )


# --- docs/notifications.md: the alert rules example runs as printed ----------------------


def docs_example() -> str:
    text = (ROOT / "docs" / "notifications.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.S | re.M)
    (code,) = [b for b in blocks if "AlertRule.session_ended(" in b]
    return str(code)


async def test_the_documented_alert_rules_example_runs(tmp_path: Path) -> None:
    script = tmp_path / "alerts_demo.py"
    script.write_text(docs_example(), encoding="utf-8")
    receiver = HttpReceiver()
    async with receiver.serving() as base:
        env = {**os.environ, "ALERT_URL": f"{base}/alerts"}
        with open(tmp_path / "out.log", "wb") as out:  # noqa: ASYNC230 - opened once
            proc = subprocess.Popen(  # noqa: ASYNC220 - polled below
                [sys.executable, str(script)], cwd=tmp_path, env=env, stdout=out, stderr=out
            )
        with anyio.fail_after(60):
            while proc.poll() is None:  # noqa: ASYNC110 - a child process
                await anyio.sleep(0.05)
    output = (tmp_path / "out.log").read_text()
    assert proc.returncode == 0, output
    assert "Session ended expired · support delivered http://127.0.0.1:8000/" in output, output
    (post,) = receiver.of("/alerts")
    assert verify(
        "change-me-0123456789",
        post.raw,
        post.headers["x-sessiontrack-signature"],
        post.headers["x-sessiontrack-timestamp"],
    )


async def test_alerts_older_than_the_retention_are_pruned(database_url: str, prefix: str) -> None:
    rule = AlertRule.session_ended("ends", targets=[Target.webhook("http://127.0.0.1:9/h", SECRET)])
    alerts = fast_alerts([rule], retention=timedelta(seconds=1), max_attempts=1000)
    async with host(database_url, prefix, alerts) as tracker:
        sid = start(tracker)
        tracker.plugin_manager.hook.sessiontrack_session_completed(session_id=sid)
        await tracker.flush()

        async def fired() -> bool:
            return len(await service_alerts(tracker)) == 1

        async def pruned() -> bool:
            return await service_alerts(tracker) == []

        await eventually(fired)
        await eventually(pruned)  # its delivery still pending (nobody listens): gone too
        due = await tracker.store.due_alert_deliveries(datetime.now(UTC) + timedelta(days=1), 10)
        assert due == []
