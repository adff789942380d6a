"""What stands between the network and the studio's page when it is opened beyond this machine: a throttle on
failed logins, and a login page that tells nothing about the studio.

Gradio checks passwords but counts nothing, and its login page still embeds the API description (every endpoint
and its parameters). `LoginGuard` is a small ASGI middleware handed to gradio's app (`launch(app_kwargs=...)`):
after `max_failures` wrong passwords from one address, that address gets 429 for `lockout_s` seconds, whatever
password it sends; and a page served to someone not logged in carries no API description.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

logger = logging.getLogger("facestudio.app")

#: Wrong passwords from one address before it is locked out, and for how long (`--login-lockout`).
MAX_FAILURES = 10
LOCKOUT_SECONDS = 600.0
_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_NOT_LOGGED_IN = (b'"auth_required":true', b'"auth_required": true')


class FailedLogins:
    """Wrong passwords per address; an address with `max_failures` of them is locked for `lockout_s` seconds."""

    def __init__(self, max_failures: int = MAX_FAILURES, lockout_s: float = LOCKOUT_SECONDS,
                 clock: Callable[[], float] = time.monotonic):
        self.max_failures = max_failures
        self.lockout_s = lockout_s
        self.clock = clock
        self._failures: dict[str, int] = {}
        self._locked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def locked(self, address: str) -> bool:
        with self._lock:
            until = self._locked_until.get(address)
            if until is None:
                return False
            if self.clock() >= until:
                del self._locked_until[address]
                return False
            return True

    def failed(self, address: str) -> None:
        with self._lock:
            count = self._failures.get(address, 0) + 1
            if count >= self.max_failures:
                self._failures.pop(address, None)
                self._locked_until[address] = self.clock() + self.lockout_s
                logger.warning("%d wrong passwords from %s: logins from it are refused for %.0f s", count, address,
                               self.lockout_s)
            else:
                self._failures[address] = count

    def succeeded(self, address: str) -> None:
        with self._lock:
            self._failures.pop(address, None)


class LoginGuard:
    """ASGI middleware: the login throttle (POST /login) and the API description left out of a page served to
    someone not logged in."""

    def __init__(self, app, logins: FailedLogins):
        self.app = app
        self.logins = logins

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "").rstrip("/") or "/"
        root = (scope.get("root_path") or "").rstrip("/")
        if root and path.startswith(root):
            path = path[len(root):] or "/"
        address = (scope.get("client") or ("?", 0))[0]
        if scope.get("method") == "POST" and path == "/login":
            return await self._login(scope, receive, send, address)
        if scope.get("method") == "GET" and path == "/":
            return await self._page(scope, receive, send)
        return await self.app(scope, receive, send)

    async def _login(self, scope, receive, send, address: str):
        if self.logins.locked(address):
            logger.warning("login from %s refused: locked out after repeated wrong passwords", address)
            body = b'{"detail":"Too many wrong passwords from this address; try again later."}'
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return None
        status: dict[str, int] = {}

        async def watch(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        code = status.get("code", 0)
        if code == 200:
            self.logins.succeeded(address)
        elif 400 <= code < 500:
            self.logins.failed(address)
        return None

    async def _page(self, scope, receive, send):
        start: dict = {}
        chunks: list[bytes] = []

        async def hold(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if any(marker in body for marker in _NOT_LOGGED_IN):
                body = _API_INFO.sub(b"window.gradio_api_info = {};</script>", body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, hold)
