"""The dashboard's defences: HTTP Basic authentication, CSRF tokens, security headers, and
the rule that a dashboard on a non-loopback address needs a password."""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import secrets

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

#: The environment variable the ``jobqueue dashboard`` command reads the password from.
PASSWORD_ENV = "JOBQUEUE_DASHBOARD_PASSWORD"
#: The cookie that holds the CSRF token; every form repeats it in a hidden field.
CSRF_COOKIE = "jobqueue_csrf"
CSRF_FIELD = "csrf_token"

# No inline scripts or styles, nothing from another origin: a payload that slipped past
# escaping still could not run.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` reaches only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BasicAuth:
    """ASGI middleware: every request needs HTTP Basic credentials with this password (any
    user name, as Faktory's FAKTORY_PASSWORD)."""

    def __init__(self, app: ASGIApp, password: str, realm: str = "jobqueue") -> None:
        self._app = app
        self._password = password.encode()
        self._realm = realm

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(Request(scope)):
            await self._app(scope, receive, send)
            return
        response = PlainTextResponse(
            "authentication required",
            status_code=401,
            headers={"WWW-Authenticate": f'Basic realm="{self._realm}", charset="UTF-8"'},
        )
        await response(scope, receive, send)

    def _authorized(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return False
        _, sep, password = decoded.partition(b":")
        return bool(sep) and hmac.compare_digest(password, self._password)


class SecurityHeaders:
    """ASGI middleware: CSP and friends on every response."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def send_with_headers(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))  # type: ignore[call-overload]
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                message["headers"] = headers
            await send(message)

        await self._app(scope, receive, send_with_headers)  # type: ignore[arg-type]


def csrf_token(request: Request) -> str:
    """This browser's CSRF token (from its cookie, or a new one that :func:`set_csrf_cookie`
    will store)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) <= 100:
        return token
    made: str | None = getattr(request.state, "new_csrf_token", None)
    if made is None:
        made = request.state.new_csrf_token = secrets.token_urlsafe(32)
    return made


def set_csrf_cookie(request: Request, response: Response) -> None:
    """Store the token :func:`csrf_token` made for this request, if it made one."""
    token = getattr(request.state, "new_csrf_token", None)
    if token:
        path = request.scope.get("root_path") or "/"
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=path,
        )


def csrf_ok(request: Request, submitted: object) -> bool:
    """Whether a form's token matches the browser's cookie (double submit; SameSite=Strict
    keeps other sites from sending the cookie at all)."""
    cookie = request.cookies.get(CSRF_COOKIE)
    return (
        isinstance(submitted, str)
        and bool(cookie)
        and hmac.compare_digest(submitted.encode(), (cookie or "").encode())
    )
