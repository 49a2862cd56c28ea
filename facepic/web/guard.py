"""Who may use the page, and which requests may change the library.

- Login: HTTP Basic against ``FACEPIC_WEB_AUTH`` (user:password), on every request, pages,
  images and API alike. Without one, `facepic serve` only listens on loopback, and then answers
  only requests addressed to a loopback name (a site that points its own name at 127.0.0.1,
  DNS rebinding, gets 403).
- Changes (POST) come from the page itself: a request a browser marks as cross-site
  (``Sec-Fetch-Site``) or from another origin (``Origin``) is refused, and a form must carry
  the session's token. A JSON body needs no token: browsers only send one cross-origin after a
  CORS preflight, which FacePic never answers.
"""

from __future__ import annotations

import hmac
import secrets
from base64 import b64decode
from typing import Any
from urllib.parse import urlsplit

from flask import Response, abort, request, session

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


def parse_login(value: str) -> tuple[str, str] | None:
    """``user:password`` from FACEPIC_WEB_AUTH, or None when it is empty."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ValueError("FACEPIC_WEB_AUTH must be user:password")
    return user, password


def is_loopback(address: str) -> bool:
    return address in LOOPBACK_NAMES or address.startswith("127.")


def check_login(login: tuple[str, str] | None) -> Response | None:
    """401 with a Basic challenge unless the request carries the login (or none is needed)."""
    if login is None:
        host = urlsplit("//" + request.host).hostname or ""
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
    """A redirect back within FacePic: a path, never another site."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback
