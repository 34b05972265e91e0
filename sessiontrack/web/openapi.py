"""The OpenAPI 3.1 document, generated from the pydantic models in :mod:`.schemas`."""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from ..events import WIRE_NAMES
from . import schemas

_REF = "#/components/schemas/{model}"
_ERROR = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ERRORS = {
    "400": "A malformed parameter or id; detail names the field",
    "401": "No or invalid credentials",
    "403": "No authenticator is configured and the client is not on the loopback interface",
    "404": "Unknown session, or one the principal may not see",
    "415": "The body is not JSON (Content-Type must be application/json)",
    "503": "The tracker is not running (the host must enter it in its lifespan)",
}
_SORT_ORDER = {
    "type": "string",
    "pattern": "^([Aa][Ss][Cc]|[Dd][Ee][Ss][Cc])$",
    "default": "DESC",
    "description": "ASC or DESC, any case",
}


def _components() -> dict[str, Any]:
    _, top = models_json_schema(
        [(m, "serialization") for m in schemas.RESPONSE_MODELS]
        + [(m, "serialization") for m in schemas.ALERT_MODELS]
        + [(m, "serialization") for m in schemas.WEBHOOK_MODELS]
        + [(schemas.StopManyBody, "validation"), (schemas.EraseBody, "validation")]
        + [(schemas.AlertRuleBody, "validation"), (schemas.WebhookBody, "validation")],
        by_alias=True,
        ref_template=_REF,
    )
    defs: dict[str, Any] = top.get("$defs", {})
    return defs


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    schema = {k: v for k, v in schema.items() if k != "title"}
    variants = schema.pop("anyOf", None)
    if variants is not None:
        kept = [v for v in variants if v.get("type") != "null"]
        if len(kept) == 1:
            schema = {**kept[0], **schema}
        else:
            schema["anyOf"] = kept
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


_NO_NUL = "^[^\\u0000]*$"
"""Free text parameters refuse NUL (PostgreSQL cannot compare it): say so."""


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    spec = model.model_json_schema(by_alias=True, mode="validation")
    props, required = spec["properties"], set(spec.get("required", ()))
    params = []
    for name, prop in props.items():
        schema = _SORT_ORDER if name == "sortOrder" else _without_null(prop)
        if schema.get("type") == "string" and not {"pattern", "format", "enum"} & set(schema):
            schema["pattern"] = _NO_NUL
        param: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": schema,
        }
        if "description" in schema:
            param["description"] = schema.pop("description")
        params.append(param)
    return params


def _json(ref_or_schema: str | dict[str, Any], description: str) -> dict[str, Any]:
    schema = (
        {"$ref": _REF.format(model=ref_or_schema)}
        if isinstance(ref_or_schema, str)
        else ref_or_schema
    )
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(
    op_id: str,
    summary: str,
    ok: dict[str, Any],
    *,
    errors: tuple[str, ...],
    params: list[dict[str, Any]] | None = None,
    links: dict[str, Any] | None = None,
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": ok}
    if links:
        ok["links"] = links
    for code in ("400", "401", "403", "404", "503", *errors):
        if code == "409":
            responses[code] = {"description": "The session has already ended", "content": _ERROR}
        else:
            responses[code] = {"description": _ERRORS[code], "content": _ERROR}
    op: dict[str, Any] = {"operationId": op_id, "summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    return op


def _link(op_id: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": op_id, "parameters": parameters}


_SSE_EVENT = {
    "type": "object",
    "description": "One event of the stream",
    "required": ["event", "id", "data"],
    "properties": {
        "event": {"type": "string", "enum": sorted(WIRE_NAMES.values())},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "retry": {"type": "integer"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {
                "type": "object",
                "required": ["sessionId", "chatbotId", "seq"],
                "properties": {
                    "sessionId": {"type": "string", "format": "uuid"},
                    "chatbotId": {"type": "string"},
                    "seq": {"type": "integer"},
                },
            },
        },
    },
}
_SESSION_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "A session id",
    "schema": {"type": "string", "format": "uuid", "pattern": schemas.UUID_PATTERN},
}
_CHATBOT_ID = {
    "name": "chatbotId",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "minLength": 1, "pattern": "^[^/\\u0000]+$"},
}


def _session_links(pointer: str) -> dict[str, Any]:
    return {
        "GetSession": _link("getSession", id=pointer),
        "GetSessionMessages": _link("getSessionMessages", id=pointer),
        "StopSession": _link("stopSession", id=pointer),
    }


_CSV = {
    "schema": {
        "type": "string",
        "description": "The same figures as CSV (format=csv): a header row, then one row per "
        "figure, node, path or step; Content-Disposition names a file",
    }
}
_NO_CHATBOT = "Unknown chatbot, or one the principal may not see"
_ANALYTICS = (
    ("summary", "getAnalyticsSummary", "Sessions, outcomes and durations", schemas.AnalyticsQuery),
    ("nodes", "getAnalyticsNodes", "Visits, exits and times per node and edge", None),
    ("paths", "getAnalyticsPaths", "The most frequent paths through the flow", schemas.PathsQuery),
    ("funnel", "getAnalyticsFunnel", "Sessions reaching steps in order", schemas.FunnelQuery),
)


_ANALYTICS_OPS = [op_id for _, op_id, _, _ in _ANALYTICS] + ["getAnalyticsVersions"]


def _analytics_paths() -> dict[str, Any]:
    """``/analytics/*``: four figure reports (JSON or CSV) and the version list."""
    paths: dict[str, Any] = {}
    for name, op_id, summary, query in _ANALYTICS:
        ok = _json(f"Analytics{name.title()}", "The figures")
        ok["content"]["text/csv"] = _CSV
        op = _op(
            op_id,
            summary,
            ok,
            errors=(),
            params=_query_params(query or schemas.AnalyticsQuery),
        )
        op["responses"]["404"]["description"] = _NO_CHATBOT
        paths[f"/analytics/{name}"] = {"get": op}
    versions = _op(
        "getAnalyticsVersions",
        "A chatbot's flow versions, newest first, with all-time session counts",
        _json("AnalyticsVersions", "The versions"),
        errors=(),
        params=_query_params(schemas.VersionsQuery),
    )
    versions["responses"]["404"]["description"] = _NO_CHATBOT
    paths["/analytics/versions"] = {"get": versions}
    return paths


def _stop_many() -> dict[str, Any]:
    op = _op(
        "stopSessions",
        "Stop several sessions, by id or by filter",
        _json("StopManyResult", "What was stopped, had already ended, or was not found"),
        errors=("415",),
    )
    del op["responses"]["404"]  # an unknown or hidden id is listed in notFound
    op["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="StopManyBody")}}},
    }
    return op


_NO_ERASE = (
    "The principal may not erase (Principal.can_erase is false), or no authenticator is "
    "configured and the client is not on the loopback interface"
)


def _privacy_paths() -> dict[str, Any]:
    erase = _op(
        "eraseData",
        "Erase every stored trace of one person (docs/privacy.md)",
        _json("ErasureResult", "What was removed, and the audit record"),
        errors=("415",),
    )
    del erase["responses"]["404"]  # nothing found is an erasure of nothing, counted 0
    erase["responses"]["403"]["description"] = _NO_ERASE
    erase["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="EraseBody")}}},
    }
    audit = _op(
        "listAudit",
        "The audit: erasures and recorded reads, newest first",
        _json({"type": "array", "items": {"$ref": _REF.format(model="AuditRecord")}}, "Records"),
        errors=(),
        params=_query_params(schemas.AuditQuery),
    )
    del audit["responses"]["404"]
    audit["responses"]["403"]["description"] = _NO_ERASE
    return {"/erase": {"post": erase}, "/audit": {"get": audit}}


_NO_MANAGE = (
    "The principal may not manage notifications (Principal.can_manage is false), or no "
    "authenticator is configured and the client is not on the loopback interface"
)
_RULE_ID = {
    "name": "ruleId",
    "in": "path",
    "required": True,
    "description": "An alert rule id",
    "schema": {"type": "string", "format": "uuid", "pattern": schemas.UUID_PATTERN},
}


def _array_of(model: str) -> dict[str, Any]:
    return {"type": "array", "items": {"$ref": _REF.format(model=model)}}


def _alert_paths() -> dict[str, Any]:
    """``/alerts``: rules (list, create, delete) and the recent alerts."""
    rules = _op(
        "listAlertRules",
        "Alert rules, oldest first",
        _json(_array_of("AlertRule"), "Rules"),
        errors=(),
    )
    create = _op(
        "createAlertRule",
        "Create an alert rule (the webhook targets' secrets are returned once)",
        _json("AlertRuleCreated", "The rule"),
        errors=("415",),
    )
    create["responses"]["201"] = create["responses"].pop("200")
    create["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="AlertRuleBody")}}},
    }
    delete = _op(
        "deleteAlertRule",
        "Delete an alert rule made through the API (a rule defined in code is a 400)",
        {"description": "Deleted"},
        errors=(),
        params=[_RULE_ID],
    )
    delete["responses"]["204"] = delete["responses"].pop("200")
    delete["responses"]["404"]["description"] = "Unknown rule, or one the principal may not see"
    recent = _op(
        "listAlerts",
        "Recent alerts, newest first, with their deliveries",
        _json(_array_of("Alert"), "Alerts"),
        errors=(),
        params=_query_params(schemas.AlertsQuery),
    )
    for op in (rules, create, recent):
        del op["responses"]["404"]
    for op in (rules, create, delete, recent):
        op["responses"]["403"]["description"] = _NO_MANAGE
    return {
        "/alerts": {"get": recent},
        "/alerts/rules": {"get": rules, "post": create},
        "/alerts/rules/{ruleId}": {"delete": delete},
    }


_WEBHOOK_ID = {
    "name": "webhookId",
    "in": "path",
    "required": True,
    "description": "A webhook subscription id (a malformed one is a 400 naming id)",
    "schema": {"type": "string", "format": "uuid", "pattern": schemas.UUID_PATTERN},
}
_NO_WEBHOOK = "Unknown subscription, or one the principal may not see"


def _webhook_paths() -> dict[str, Any]:
    """``/webhooks``: subscriptions (list, create, get, delete, resume) and their
    delivery attempts."""
    listed = _op(
        "listWebhooks",
        "Webhook subscriptions, oldest first",
        _json(_array_of("Webhook"), "Subscriptions"),
        errors=(),
    )
    create = _op(
        "createWebhook",
        "Subscribe a URL to the events committed from now on (the secret is returned once)",
        _json("WebhookCreated", "The subscription and its secret"),
        errors=("415",),
    )
    create["responses"]["201"] = create["responses"].pop("200")
    create["requestBody"] = {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model="WebhookBody")}}},
    }
    get = _op(
        "getWebhook",
        "One webhook subscription",
        _json("Webhook", "The subscription"),
        errors=(),
        params=[_WEBHOOK_ID],
    )
    delete = _op(
        "deleteWebhook",
        "Delete a subscription with its cursor and delivery log",
        {"description": "Deleted"},
        errors=(),
        params=[_WEBHOOK_ID],
    )
    delete["responses"]["204"] = delete["responses"].pop("200")
    resume = _op(
        "resumeWebhook",
        "Make a paused subscription active again, its failures at 0",
        _json("Webhook", "The subscription"),
        errors=(),
        params=[_WEBHOOK_ID],
    )
    deliveries = _op(
        "listWebhookDeliveries",
        "A subscription's newest delivery attempts, newest first",
        _json(_array_of("WebhookDelivery"), "Attempts"),
        errors=(),
        params=[_WEBHOOK_ID, *_query_params(schemas.DeliveriesQuery)],
    )
    for op in (listed, create):
        del op["responses"]["404"]
    for op in (get, delete, resume, deliveries):
        op["responses"]["404"]["description"] = _NO_WEBHOOK
    for op in (listed, create, get, delete, resume, deliveries):
        op["responses"]["403"]["description"] = _NO_MANAGE
    return {
        "/webhooks": {"get": listed, "post": create},
        "/webhooks/{webhookId}": {"get": get, "delete": delete},
        "/webhooks/{webhookId}/resume": {"post": resume},
        "/webhooks/{webhookId}/deliveries": {"get": deliveries},
    }


def _paths() -> dict[str, Any]:
    list_params = [p for p in _query_params(schemas.ListQuery)]
    by_bot_params = [_CHATBOT_ID, *(p for p in list_params if p["name"] != "chatbotId")]
    sessions = {"type": "array", "items": {"$ref": _REF.format(model="Session")}}
    return {
        "/": {
            "get": _op(
                "listSessions",
                "Sessions, paginated and filtered",
                _json("SessionPage", "A page of sessions"),
                errors=(),
                params=list_params,
                links=_session_links("$response.body#/data/0/id"),
            )
        },
        "/active": {
            "get": _op(
                "listActiveSessions",
                "Active sessions",
                _json(sessions, "Active sessions, most recently updated first"),
                errors=(),
                links=_session_links("$response.body#/0/id"),
            )
        },
        "/stats": {
            "get": _op(
                "getStats",
                "Counts of sessions",
                _json("Stats", "Counts"),
                errors=(),
                params=_query_params(schemas.StatsQuery),
            )
        },
        "/chatbots": {
            "get": _op(
                "listChatbots",
                "Chatbots the principal may see",
                _json(
                    {"type": "array", "items": {"$ref": _REF.format(model="Chatbot")}},
                    "Chatbots, by name",
                ),
                errors=(),
                links={
                    "ListChatbotSessions": _link(
                        "listChatbotSessions", chatbotId="$response.body#/0/id"
                    ),
                    **{
                        op_id[3:]: _link(op_id, **{"query.chatbotId": "$response.body#/0/id"})
                        for op_id in _ANALYTICS_OPS
                    },
                },
            )
        },
        "/export": {
            "get": _op(
                "exportSessions",
                "Every matching session, streamed as JSON Lines or CSV",
                {
                    "description": "A stream (Content-Disposition names a file): jsonl, one "
                    "session detail a line with every message, node execution (and its seq) "
                    "and call; csv, a header row and one list item a row plus "
                    "durationSeconds. See docs/export.md",
                    "content": {
                        "application/x-ndjson": {"schema": {"type": "string"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                errors=(),
                params=[
                    p
                    for p in _query_params(schemas.ExportQuery)
                    if p["name"] not in schemas.NOT_EXPORTED
                ],
            )
        },
        "/chatbot/{chatbotId}": {
            "get": _op(
                "listChatbotSessions",
                "Sessions of one chatbot",
                _json("SessionPage", "A page of sessions"),
                errors=(),
                params=by_bot_params,
                links=_session_links("$response.body#/data/0/id"),
            )
        },
        "/events": {
            "get": _op(
                "streamEvents",
                "Live events as Server-Sent Events",
                {
                    "description": "An endless event stream: `event:` is the socket event name, "
                    "`id:` the sequence number, `data:` the JSON payload",
                    "content": {"text/event-stream": {"schema": _SSE_EVENT}},
                },
                errors=(),
                params=[
                    *_query_params(schemas.EventsQuery),
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
                        "description": "Resume after this sequence number",
                    },
                ],
            )
        },
        "/stop": {"post": _stop_many()},
        **_privacy_paths(),
        **_alert_paths(),
        **_webhook_paths(),
        **_analytics_paths(),
        "/search/messages": {
            "get": _op(
                "searchMessages",
                "Messages whose text has the words, newest first, with highlights",
                _json("MessageSearchPage", "A page of messages"),
                errors=(),
                params=_query_params(schemas.SearchMessagesQuery),
                links={
                    "GetSession": _link("getSession", id="$response.body#/data/0/sessionId"),
                    "GetSessionMessages": _link(
                        "getSessionMessages", id="$response.body#/data/0/sessionId"
                    ),
                },
            )
        },
        "/{id}": {
            "get": _op(
                "getSession",
                "A session's detail",
                _json("SessionDetail", "The session"),
                errors=(),
                params=[_SESSION_ID],
            )
        },
        "/{id}/messages": {
            "get": _op(
                "getSessionMessages",
                "A session's messages, oldest first",
                _json(
                    {"type": "array", "items": {"$ref": _REF.format(model="Message")}}, "Messages"
                ),
                errors=(),
                params=[_SESSION_ID, *_query_params(schemas.MessagesQuery)],
            )
        },
        "/{id}/fixture": {
            "get": _op(
                "getSessionFixture",
                "A session as a replayable test fixture (docs/replay.md)",
                _json(
                    {"type": "object", "description": "The fixture, format sessiontrack-fixture"},
                    "The fixture",
                ),
                errors=(),
                params=[_SESSION_ID],
            )
        },
        "/{id}/stop": {
            "post": _op(
                "stopSession",
                "Stop an active session",
                _json("StopResult", "Stopped"),
                errors=("409",),
                params=[_SESSION_ID],
            )
        },
    }


def build_document(
    *, secured: bool, title: str = "sessiontrack", version: str = "0.1.0"
) -> dict[str, Any]:
    """The document without ``servers`` (set per request from the mount's root path)."""
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Chatbot sessions: history, statistics and live events.",
        },
        "paths": _paths(),
        "components": {"schemas": _components()},
    }
    if secured:
        doc["components"]["securitySchemes"] = {
            "bearerAuth": {"type": "http", "scheme": "bearer"},
            # EventSource cannot set headers: the stream also takes the token in the query
            "accessToken": {"type": "apiKey", "in": "query", "name": "access_token"},
        }
        doc["security"] = [{"bearerAuth": []}]
        doc["paths"]["/events"]["get"]["security"] = [{"bearerAuth": []}, {"accessToken": []}]
    return doc


def with_servers(doc: dict[str, Any], root_path: str) -> dict[str, Any]:
    out = copy.copy(doc)
    out["servers"] = [{"url": root_path or "/"}]
    return out
