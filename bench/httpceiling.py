"""The HTTP ceiling: an aiohttp server that reads the webhook body, parses the same JSON and answers 200.

What the receiver could reach if the database and everything else cost nothing.
`python -m bench.httpceiling --port P`
"""

from __future__ import annotations

import argparse
import json

from aiohttp import web


async def webhook(request: web.Request) -> web.Response:
    body = await request.read()
    data = json.loads(body)
    return web.json_response({"status": "ok", "alerts": {"received": len(data.get("alerts", []))}})


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def make_app() -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/webhook", webhook)
    app.router.add_get("/healthz", healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(make_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
