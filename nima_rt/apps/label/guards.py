"""The checks every request passes before the app acts on it: Host (DNS rebinding), Origin and
``Sec-Fetch-Site`` (another web page driving the rater's browser), the token, and the JSON body.

A browser names the page a request comes from: ``Origin`` on every POST and on cross-origin fetches,
``Sec-Fetch-Site`` on every request of a current browser. A request to the API or the photos that either
header marks as coming from another site is refused, so a web page a rater has open elsewhere can
neither lease photos, post ratings nor read photos through the rater's browser. A client that sends
neither (curl, a script) is not a browser acting for someone else and is let through (the token, when
set, still applies).
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from nima_rt.apps.label.checks import RequestError

TOKEN_COOKIE = "nima_rt_label_token"
TOKEN_HEADER = "X-Nima-Rt-Token"
SAME_SITE_FETCHES = ("same-origin", "none")  # "none": typed in the address bar, a bookmark


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str | None) -> None:
    """On a loopback server, the ``Host`` header must name loopback (no DNS rebinding)."""
    if not host:
        raise RequestError(400, "missing Host header")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if not is_loopback(name):
        raise RequestError(403, f"Host {host!r} is not a loopback name (this server listens on loopback)")


def check_same_origin(headers: dict[str, str]) -> None:
    """Refuse a request a browser says comes from another site (``Origin`` not this server's
    ``Host``, or ``Sec-Fetch-Site`` other than same-origin)."""
    origin = headers.get("origin")
    if origin is not None:
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        if not netloc or netloc != headers.get("host", "").lower():
            raise RequestError(403, f"request from another origin ({origin[:80]!r}) refused: only the rating "
                                    "page of this server may use it")
    site = headers.get("sec-fetch-site")
    if site is not None and site.lower() not in SAME_SITE_FETCHES:
        raise RequestError(403, f"cross-site request refused (Sec-Fetch-Site: {site[:40]})")


def token_ok(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_token(headers: dict[str, str], expected: str | None) -> None:
    """With a token set, the request must carry it (header, or the cookie set by ``/?token=``)."""
    if expected is None:
        return
    given = headers.get(TOKEN_HEADER.lower())
    if given is None and "cookie" in headers:
        try:
            morsel = SimpleCookie(headers["cookie"]).get(TOKEN_COOKIE)
        except CookieError:
            morsel = None
        given = None if morsel is None else morsel.value
    if given is None:
        raise RequestError(401, "this server needs a token: open the link with ?token=... that its owner gave you")
    if not token_ok(given, expected):
        raise RequestError(403, "wrong token")


def json_body(headers: dict[str, str], body: bytes | None) -> dict[str, Any]:
    """The request's JSON object; 4xx for anything else (a 5,000-digit number or deep nesting included)."""
    content_type = headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise RequestError(415, "POST bodies must be application/json")
    if body is None:
        raise RequestError(411, "POST needs a Content-Length")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"body is not valid JSON ({exc})") from None
    except (ValueError, RecursionError) as exc:  # int() digit limit, nesting deeper than the parser goes
        raise RequestError(400, f"body is not JSON this server reads ({str(exc)[:80]})") from None
    if not isinstance(data, dict):
        raise RequestError(400, "body must be a JSON object")
    return data


__all__ = ["TOKEN_COOKIE", "TOKEN_HEADER", "check_host", "check_same_origin", "check_token", "is_loopback",
           "json_body", "token_ok"]
