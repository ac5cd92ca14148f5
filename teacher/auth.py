"""The server's API key on every route but the health check.

vLLM's own key check covers only paths under /v1, /v2, /inference and /cohere: `POST /invocations`
generates text, `/tokenize` and `/metrics` answer, and the adapter routes say 400/404, all without a
key. seal starts its servers with `--middleware teacher.auth.KeyOnEveryRoute` (vLLM's extension point for
ASGI middleware), which runs inside the server process and reads the key from VLLM_API_KEY, the variable
seal sets for the servers it starts. Added last, it is the outermost layer: nothing runs before it.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A supervisor (ours, or a load balancer) must see that the server is up without holding the key.
OPEN_PATHS = frozenset({"/health"})
UNAUTHORIZED = b'{"error": "Unauthorized: this server needs its API key as `Authorization: Bearer KEY`"}'


class KeyOnEveryRoute:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.expected = f"Bearer {os.environ['VLLM_API_KEY']}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS or self._allowed(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})  # policy violation
        else:
            await send({"type": "http.response.start", "status": 401, "headers": [
                (b"content-type", b"application/json"), (b"content-length", str(len(UNAUTHORIZED)).encode()),
                (b"www-authenticate", b"Bearer")]})
            await send({"type": "http.response.body", "body": UNAUTHORIZED})

    def _allowed(self, scope: Scope) -> bool:
        given = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
        return hmac.compare_digest(given, self.expected)  # constant time: no timing oracle on the key
