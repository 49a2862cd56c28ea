"""Who may use the page, and which requests may change the library.

- Login: HTTP Basic against ``FACEPIC_WEB_AUTH`` (user:password), on every request, pages,
  images and API alike. Without one, `facepic serve` only listens on loopback, and then answers
  only requests addressed to ``localhost`` or a loopback address written as one (127.0.0.1,
  [::1]): any other name, even one that begins ``127.`` or ``localhost.`` (a site that points
  its own name at 127.0.0.1, DNS rebinding), gets 403.
- Changes (POST) come from the page itself: a request a browser marks as cross-site
  (``Sec-Fetch-Site``) or from another origin (``Origin``) is refused, and a form must carry
  the session's token. A JSON body needs no token: browsers only send one cross-origin after a
  CORS preflight, which FacePic never answers.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from base64 import b64decode
from typing import Any
from urllib.parse import urlsplit

from flask import Response, abort, request, session

LOOPBACK_NAMES = {"localhost"}


def parse_login(value: str) -> tuple[str, str] | None:
    """``user:password`` from FACEPIC_WEB_AUTH, or None when it is empty."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("FACEPIC_WEB_AUTH must be user:password")
    return user, password


def is_loopback(address: str) -> bool:
    """``localhost`` or a loopback IP address (127.0.0.0/8, ::1) written as one, never a DNS
    name that merely begins like one (``127.0.0.1.nip.io``, ``localhost.evil``)."""
    if address.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def check_login(login: tuple[str, str] | None) -> Response | None:
    """401 with a Basic challenge unless the request carries the login (or none is needed)."""
    if login is None:
        try:
            host = urlsplit("//" + request.host).hostname or ""
        except ValueError:  # an unbalanced [ in the Host header
            host = ""
        if not is_loopback(host):
            abort(403, "FacePic without a login only answers at 127.0.0.1 or localhost")
        return None
    header = request.headers.get("Authorization", "")
    if header.startswith("Basic "):
        try:
            user, _, password = b64decode(header[6:]).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
        if hmac.compare_digest(user.encode(), login[0].encode()) & hmac.compare_digest(
            password.encode(), login[1].encode()
        ):
            return None
    return Response("login required\n", 401, {"WWW-Authenticate": 'Basic realm="FacePic", charset="UTF-8"'})


def csrf_token() -> str:
    """The session's token for forms (and for the page's own scripts)."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def check_change() -> None:
    """403 unless this POST comes from FacePic's own pages (or a script sending JSON)."""
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site not in ("same-origin", "none"):
        abort(403, "a change must come from FacePic's own page")
    origin = request.headers.get("Origin")
    if origin is not None and origin != request.host_url.rstrip("/"):
        abort(403, "a change must come from FacePic's own page")
    if request.is_json:
        return
    sent = request.form.get("csrf") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(403, "the form is out of date: reload the page and try again")


def safe_next(target: Any, fallback: str) -> str:
    """A redirect back within FacePic: a path, never another site. Browsers drop tabs and
    newlines from a URL and read a backslash as ``/`` (``/<TAB>/evil.com`` is ``//evil.com``):
    such characters are removed first, and the path must start with one ``/`` alone."""
    if not isinstance(target, str):
        return fallback
    cleaned = "".join(c for c in target if c.isprintable() and not c.isspace())
    if cleaned.startswith("/") and not cleaned.startswith("//") and "\\" not in cleaned:
        return cleaned
    return fallback
