"""``python -m examples.helpdesk.alert_receiver``: a local receiver that prints the demo's
alerts (and checks their signature): run it, then ``python -m examples.helpdesk
--alerts-url http://127.0.0.1:9000/alerts``."""

from __future__ import annotations

import argparse
import json
import os

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sessiontrack.notify import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

from .alerts import DEFAULT_SECRET


def make_app(secret: str) -> Starlette:
    async def receive(request: Request) -> Response:
        body = await request.body()
        signature = request.headers.get(SIGNATURE_HEADER)
        if signature is not None and not verify(
            secret, body, signature, request.headers.get(TIMESTAMP_HEADER)
        ):
            return Response("bad signature", status_code=401)
        message = json.loads(body)
        alert = message.get("alert") or {"title": message.get("text", "?"), "url": ""}
        print(f"alert: {alert['title']}  {alert.get('url') or alert.get('link', '')}", flush=True)
        return Response(status_code=204)

    return Starlette(routes=[Route("/{path:path}", receive, methods=["POST"])])


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m examples.helpdesk.alert_receiver")
    p.add_argument("--port", type=int, default=9000, help="port (default 9000)")
    args = p.parse_args()
    secret = os.environ.get("HELPDESK_ALERTS_SECRET", DEFAULT_SECRET)
    print(f"receiving alerts on http://127.0.0.1:{args.port}/alerts", flush=True)
    uvicorn.run(make_app(secret), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
