"""The Flask app of `facepic serve`: server-rendered pages, the JSON API under /api/, images.

Pages and API read and change the library through one ``Site`` (``facepic.web.site``);
``guard`` decides who may come in and which requests may change anything.
"""

from __future__ import annotations

import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import (
    Flask,
    abort,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    send_file,
    url_for,
)
from PIL import Image
from werkzeug.wrappers import Response as BaseResponse

from facepic import storage
from facepic.context import Context
from facepic.errors import FacePicError
from facepic.persons import MAX_FACES, PersonError
from facepic.settings import redact
from facepic.thumbnails import FACE_SIZE, square_window
from facepic.web import display, guard, originals
from facepic.web.site import SORTS, BadQuery, NotFound, Site, page_number

PRESIGNED_SECONDS = 300  # how long a bucket URL handed to the browser works
MAX_SOURCES = 1000  # persons merged in one request: the change lock is held while they are


def create_app(ctx: Context, login: tuple[str, str] | None = None) -> Flask:
    """The app on ``ctx``'s library, store and data folder; ``login`` (user, password) or None."""
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=secrets.token_bytes(32),
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_HTTPONLY=True,
        JSON_SORT_KEYS=False,
        MAX_CONTENT_LENGTH=1 << 20,
    )
    site = Site(ctx)
    app.extensions["facepic"] = site
    _guarded(app, login)
    app.jinja_env.globals["csrf_token"] = guard.csrf_token
    _refusals(app, ctx)
    _pages(app, site)
    _api(app, site)
    _images(app, site, ctx)
    return app


def _guarded(app: Flask, login: tuple[str, str] | None) -> None:
    """Every request passes ``guard`` (the login, and a change only from this page); every
    response carries headers that keep it out of other sites' frames and scripts."""

    @app.before_request
    def gate() -> BaseResponse | None:
        denied = guard.check_login(login)
        if denied is not None:
            return denied
        guard.check_change()
        return None

    @app.after_request
    def headers(response: BaseResponse) -> BaseResponse:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' https: http: data:; style-src 'self'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        return response


def _refusals(app: Flask, ctx: Context) -> None:
    """The library's refusals as a redacted message: JSON under /api/, else the error page, or
    for a refused form a flashed line and the way back."""

    @app.errorhandler(NotFound)
    def not_found(e: NotFound) -> Any:
        message = redact(str(e), ctx.settings)  # the path may hold a secret typed as a name
        if request.path.startswith("/api/"):
            return jsonify(error=message), 404
        return render_template("error.html", message=message), 404

    @app.errorhandler(FacePicError)
    def refused(e: FacePicError) -> Any:
        code = 400 if isinstance(e, (PersonError, BadQuery)) else 503  # else: the database or bucket failed
        message = redact(str(e), ctx.settings)  # as the CLI does: a secret typed as a name stays one
        if request.path.startswith("/api/"):
            return jsonify(error=message), code
        if request.method == "GET" or code != 400:
            return render_template("error.html", message=message), code
        flash(message, "error")
        return _back(url_for("people"))


def _people_page(site: Site) -> dict[str, Any]:
    """The people page's persons, as its query asks: ?page=, hidden=1, sort=, name=."""
    args = request.args
    return site.people(
        page_number(args.get("page")),
        args.get("hidden") == "1",
        args.get("sort") or SORTS[0],
        args.get("name", ""),
    )


def _search(site: Site) -> dict[str, Any]:
    """The photo search, as its query asks: ?person= (ids or names, repeated), from=, to=
    (YYYY-MM-DD), folder=, page=."""
    args = request.args
    return site.search(
        [p for p in args.getlist("person") if p.strip()],
        page_number(args.get("page")),
        args.get("from", "").strip(),
        args.get("to", "").strip(),
        args.get("folder", "").strip(),
    )


def _pages(app: Flask, site: Site) -> None:
    """The server-rendered pages: reads by GET; corrections by forms that flash what they did
    and go back to the page they came from."""
    _reading_pages(app, site)
    _person_forms(app, site)
    _face_forms(app, site)


def _back(fallback: str) -> BaseResponse:
    """Back to the form's ``next`` page when it is one of ours, else to ``fallback``."""
    return redirect(guard.safe_next(request.form.get("next"), fallback))


def _flash_dropped(done: dict[str, Any]) -> None:
    """A note for each name a merge dropped."""
    for dropped in done["dropped_names"]:
        flash(f"note: the name {dropped!r} was dropped", "note")


def _reading_pages(app: Flask, site: Site) -> None:
    """People, "same person?", a person, a photo, the unassigned faces and search."""

    @app.get("/")
    def people() -> str:
        return render_template("people.html", data=_people_page(site), suggested=site.suggested.count())

    @app.get("/same")
    def same() -> str:
        return render_template(
            "same.html", data=site.same(page_number(request.args.get("page")), request.args.get("person"))
        )

    @app.get("/persons/<person_id>")
    def person(person_id: str) -> str:
        return render_template("person.html", data=site.person(person_id, page_number(request.args.get("page"))))

    @app.get("/photos/<image_id>")
    def photo(image_id: str) -> str:
        data = site.photo(image_id, request.args.get("person"))
        image = site.image(image_id)
        # The whole photo when its original can be reached, else the square thumbnail.
        whole = image is not None and display.rendition(site.ctx, image) is not None
        return render_template("photo.html", data=data, whole=whole)

    @app.get("/unassigned")
    def unassigned() -> str:
        return render_template("unassigned.html", data=site.unassigned(page_number(request.args.get("page"))))

    @app.get("/search")
    def search() -> str:
        query = request.args.get("q", "")
        return render_template("search.html", data=_search(site), query=query, found=site.find(query) if query else [])


def _person_forms(app: Flask, site: Site) -> None:
    """The forms that change a person: the "same person?" answer, name, merge, cover, hide."""

    @app.post("/same")
    def same_answer() -> BaseResponse:
        answer = request.form.get("answer", "")
        if answer not in ("yes", "no"):
            abort(400, "answer is yes or no")
        done = site.answer(request.form.get("a", ""), request.form.get("b", ""), answer == "yes")
        if done["same"]:
            flash(f"one person now: {done['name'] or done['id']}", "ok")
            _flash_dropped(done)
        else:
            flash("kept apart: they will not be suggested again (Undo takes it back)", "ok")
        return _back(url_for("same"))

    @app.post("/persons/<person_id>/name")
    def rename(person_id: str) -> BaseResponse:
        done = site.rename(person_id, request.form.get("name", ""))
        flash(f"named {done['name']}", "ok")
        if done["others_named"]:
            flash(f"{len(done['others_named'])} other person(s) have this name too", "note")
        return _back(url_for("person", person_id=person_id))

    @app.post("/persons/<person_id>/merge")
    def merge(person_id: str) -> BaseResponse:
        done = site.merge(request.form.get("into", ""), [person_id])
        flash(f"merged into {done['name'] or done['id']}", "ok")
        _flash_dropped(done)
        return redirect(url_for("person", person_id=done["id"]))

    @app.post("/persons/<person_id>/cover")
    def cover(person_id: str) -> BaseResponse:
        site.cover(person_id, request.form.get("face_id", ""))
        flash("cover changed", "ok")
        return _back(url_for("person", person_id=person_id))

    @app.post("/persons/<person_id>/hide")
    def hide(person_id: str) -> BaseResponse:
        hidden = request.form.get("hidden", "1") == "1"
        site.hide(person_id, hidden)
        flash("hidden: it stays out of the people page" if hidden else "shown again", "ok")
        return _back(url_for("person", person_id=person_id))


def _face_forms(app: Flask, site: Site) -> None:
    """The forms that change faces (one, or those ticked on a page), and Undo."""

    @app.post("/faces/<face_id>/move")
    def move(face_id: str) -> BaseResponse:
        target = None if request.form.get("new") == "1" else request.form.get("person", "")
        done = site.move(face_id, target)
        flash("moved to a new person" if target is None else "moved", "ok")
        return _back(url_for("person", person_id=done["person_id"]))

    @app.post("/faces")
    def faces() -> BaseResponse:
        """The faces ticked on a page (``face``), and what to do with them (``action``)."""
        return _ticked_faces(site, _face_ids(request.form.getlist("face")), request.form.get("action", ""))

    @app.post("/undo")
    def undo() -> BaseResponse:
        done = site.undo()
        flash(f"undone: the {done['undone']} of {done['at'][:19].replace('T', ' ')}", "ok")
        return _back(url_for("people"))

    @app.post("/faces/<face_id>/reject")
    def reject(face_id: str) -> BaseResponse:
        site.reject(face_id)
        flash("not this person: the face waits among the unassigned", "ok")
        return _back(url_for("unassigned"))


def _ticked_faces(site: Site, chosen: list[str], action: str) -> BaseResponse:
    """Does ``action`` (move, new, reject, ignore) to the ``chosen`` faces and says so; a 400
    for any other action."""
    if action == "move":
        done = site.move_many(chosen, request.form.get("person", ""))
        flash(f"{done['faces']} moved", "ok")
    elif action == "new":
        done = site.move_many(chosen, None)
        flash(f"{done['faces']} moved to a new person", "ok")
        return redirect(url_for("person", person_id=done["person_id"]))
    elif action == "reject":
        site.reject_many(chosen)
        flash(f"{len(chosen)} not this person: they wait among the unassigned", "ok")
    elif action == "ignore":
        site.ignore_many(chosen)
        flash(f"{len(chosen)} not a face: hidden from now on (Undo brings them back)", "ok")
    else:
        abort(400, "action is one of move, new, reject, ignore")
    return _back(url_for("unassigned"))


def _api(app: Flask, site: Site) -> None:
    """The JSON API under /api/: the pages' reads by GET, their corrections by POSTed JSON; and
    every HTTP error, redacted, as JSON there and as the error page elsewhere."""
    _api_reads(app, site)
    _api_changes(app, site)
    _http_errors(app, site)


def _page() -> int:
    """The page the query asks for (?page=)."""
    return page_number(request.args.get("page"))


def _body() -> dict[str, Any]:
    """The request's JSON object; else a 400 saying what to send."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        abort(400, "send a JSON object (Content-Type: application/json)")
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # JSON may escape half a UTF-16 pair; no database stores it
        abort(400, "the JSON body holds text that is not Unicode (a lone surrogate such as \\ud800)")
    return data


def _flag(data: dict[str, Any], key: str, default: bool) -> bool:
    """``data[key]`` as true or false, ``default`` when absent; else a 400."""
    value = data.get(key, default)
    if not isinstance(value, bool):
        abort(400, f"{key} must be true or false")
    return value


def _text(data: dict[str, Any], key: str) -> str:
    """``data[key]`` as a string; else a 400."""
    value = data.get(key)
    if not isinstance(value, str):
        abort(400, f"{key!r} must be a string")
    return value


def _api_reads(app: Flask, site: Site) -> None:
    """What the pages show, as JSON."""
    app.add_url_rule("/api/persons", "api_persons", lambda: jsonify(_people_page(site)))
    app.add_url_rule("/api/persons/search", "api_find", lambda: jsonify(site.find(request.args.get("q", ""))))
    app.add_url_rule(
        "/api/persons/<person_id>", "api_person", lambda person_id: jsonify(site.person(person_id, _page()))
    )
    app.add_url_rule(
        "/api/photos/<image_id>",
        "api_photo",
        lambda image_id: jsonify(site.photo(image_id, request.args.get("person"))),
    )
    app.add_url_rule("/api/unassigned", "api_unassigned", lambda: jsonify(site.unassigned(_page())))
    app.add_url_rule("/api/search", "api_search", lambda: jsonify(_search(site)))
    app.add_url_rule("/api/same", "api_same", lambda: jsonify(site.same(_page(), request.args.get("person"))))


def _api_changes(app: Flask, site: Site) -> None:
    """The corrections, each a POST of a JSON object answered with what it did."""

    def post(rule: str, name: str, fn: Callable[..., Any]) -> None:
        app.add_url_rule(rule, name, lambda **kw: jsonify(fn(_body(), **kw)), methods=["POST"])

    post("/api/persons/<person_id>/name", "api_name", lambda d, person_id: site.rename(person_id, _text(d, "name")))
    post(
        "/api/persons/<person_id>/merge",
        "api_merge",
        lambda d, person_id: site.merge(person_id, _strings(d.get("sources"))),
    )
    post("/api/persons/<person_id>/cover", "api_cover", lambda d, person_id: site.cover(person_id, _text(d, "face_id")))
    post(
        "/api/persons/<person_id>/hide",
        "api_hide",
        lambda d, person_id: site.hide(person_id, _flag(d, "hidden", True)),
    )
    post(
        "/api/faces/<face_id>/move",
        "api_move",
        lambda d, face_id: site.move(face_id, None if _flag(d, "new", False) else _text(d, "person")),
    )
    post("/api/faces/<face_id>/reject", "api_reject", lambda d, face_id: site.reject(face_id))
    post(
        "/api/faces/move",
        "api_move_many",
        lambda d: site.move_many(_face_ids(d.get("faces")), None if _flag(d, "new", False) else _text(d, "person")),
    )
    post("/api/undo", "api_undo", lambda d: site.undo())
    post("/api/same", "api_same_answer", lambda d: site.answer(*_pair(d.get("persons")), _same(d.get("same"))))
    post("/api/faces/reject", "api_reject_many", lambda d: site.reject_many(_face_ids(d.get("faces"))))
    post("/api/faces/ignore", "api_ignore_many", lambda d: site.ignore_many(_face_ids(d.get("faces"))))


def _http_errors(app: Flask, site: Site) -> None:
    """An HTTP error's description, redacted (a 500's never shown): JSON under /api/, else the
    error page."""

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(410)
    @app.errorhandler(413)
    @app.errorhandler(500)
    def http_error(e: Any) -> Any:
        description = e.description if e.code != 500 else "internal error: the server's output says more"
        description = redact(description, site.ctx.settings)  # as the CLI and the handlers above do
        if request.path.startswith("/api/"):
            return jsonify(error=description), e.code
        return render_template("error.html", message=description), e.code


def _pair(value: Any) -> tuple[str, str]:
    """The two persons a "same person?" answer is about."""
    if not isinstance(value, list) or len(value) != 2 or not all(isinstance(v, str) for v in value):
        abort(400, "'persons' must be a list of two person ids or names")
    return value[0], value[1]


def _same(value: Any) -> bool:
    """The answer itself: no default, as a yes merges."""
    if not isinstance(value, bool):
        abort(400, "'same' must be true (one person: merge them) or false (not the same: keep them apart)")
    return value


def _strings(value: Any) -> list[str]:
    """The merge's sources, each once; at most MAX_SOURCES, so that a request holds the change
    lock for a bounded time."""
    return _distinct(
        value,
        "'sources' must be a list of person ids or names",
        lambda n: f"'sources' names {n:,} persons: merge at most {MAX_SOURCES:,} at a time",
        MAX_SOURCES,
    )


def _face_ids(value: Any) -> list[str]:
    """The faces a correction acts on, each once; at most MAX_FACES (the change lock is held
    while they are written)."""
    return _distinct(
        value,
        "'faces' must be a list of face ids (choose at least one face)",
        lambda n: f"'faces' names {n:,} faces: correct at most {MAX_FACES:,} at a time",
        MAX_FACES,
    )


def _distinct(value: Any, shape: str, too_many: Callable[[int], str], limit: int) -> list[str]:
    """A JSON list of strings, each once and at most ``limit`` of them; else a 400 saying so."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        abort(400, shape)
    distinct = list(dict.fromkeys(value))
    if len(distinct) > limit:
        abort(400, too_many(len(distinct)))
    return distinct


def _images(app: Flask, site: Site, ctx: Context) -> None:
    """Thumbnails, face crops and covers from the data folder, else from the bucket through a
    short-lived presigned URL (the browser never sees the bucket's keys); originals on demand."""
    bucket = ctx.store if isinstance(ctx.store, storage.S3Store) else None
    _photo_images(app, site, ctx, bucket)
    _face_images(app, site, ctx, bucket)


def _local(path: Path) -> BaseResponse | None:
    """The JPEG at ``path`` when it is there."""
    return send_file(path, mimetype="image/jpeg", max_age=3600) if path.is_file() else None


def _must(doc: dict[str, Any] | None, what: str) -> dict[str, Any]:
    """``doc``; a 404 "no such ``what``" when there is none."""
    if doc is None:
        abort(404, f"no such {what}")
    return doc


def _presigned(bucket: storage.S3Store, key: str) -> BaseResponse:
    """A redirect to ``key`` in the bucket, through a URL that works PRESIGNED_SECONDS and is
    not cached."""
    response = redirect(bucket.presigned_url(key, PRESIGNED_SECONDS))
    response.headers["Cache-Control"] = "no-store"
    return response


def _photo_images(app: Flask, site: Site, ctx: Context, bucket: storage.S3Store | None) -> None:
    """A photo's thumbnail, its rendition for the photo page, and its original."""

    @app.get("/img/thumb/<image_id>.jpg")
    def thumb_image(image_id: str) -> BaseResponse:
        image = _must(site.image(image_id), "photo")
        if found := _local(ctx.folder.thumbnail(image_id)):
            return found
        key = (image.get("keys") or {}).get("thumbnail")
        if bucket is not None and key:
            return _presigned(bucket, key)
        abort(404, "this photo's thumbnail is neither in the data folder nor in a bucket")

    @app.get("/img/display/<image_id>.jpg")
    def display_image(image_id: str) -> BaseResponse:
        image = _must(site.image(image_id), "photo")
        path = display.rendition(ctx, image)
        if path is None:
            return redirect(url_for("thumb_image", image_id=image_id))
        return send_file(path, mimetype="image/jpeg", max_age=3600)

    @app.get("/photos/<image_id>/original")
    def original(image_id: str) -> BaseResponse:
        image = _must(site.image(image_id), "photo")
        if found := _stored_original(ctx, bucket, image) or _original_at_path(image):
            return found
        abort(404, "the original is neither in the bucket nor at its path (is the drive mounted?)")


def _stored_original(ctx: Context, bucket: storage.S3Store | None, image: dict[str, Any]) -> BaseResponse | None:
    """The original as uploaded: from the bucket, or from the data folder's copy of the store."""
    key = (image.get("keys") or {}).get("original")
    if not (key and image.get("uploaded")):
        return None
    if bucket is not None:
        return _presigned(bucket, key)
    copied = ctx.folder.objects / key
    if copied.is_file():
        return send_file(copied, mimetype=storage.CONTENT_TYPES.get(image.get("ext", ""), None))
    return None


def _original_at_path(image: dict[str, Any]) -> BaseResponse | None:
    """The original at the path it was scanned from, when it is there; a 410 when it changed."""
    if not (image.get("root") and image.get("path")):
        return None
    try:
        opened = originals.open_original(
            image["root"], image["path"], image.get("size"), image.get("sha256"), image.get("mtime_ns")
        )
    except originals.Changed as e:
        abort(410, f"this photo {e}")
    if opened is None:
        return None
    return send_file(
        opened,
        mimetype=storage.CONTENT_TYPES.get(image.get("ext", ""), None),
        download_name=image.get("filename") or Path(image["path"]).name,
    )


def _face_images(app: Flask, site: Site, ctx: Context, bucket: storage.S3Store | None) -> None:
    """A face's crop and a person's cover."""

    @app.get("/img/face/<face_id>.jpg")
    def face_image(face_id: str) -> BaseResponse:
        doc = _must(site.face_doc(face_id), "face")
        if found := _local(ctx.folder.face_crop(face_id)):
            return found
        image = _must(site.image(doc["image_id"]), "photo")
        # No local crop (a data folder elsewhere): cut it from the thumbnail.
        data = _thumbnail_bytes(ctx, image)
        if data is None:
            abort(404, "no thumbnail to cut this face from")
        return send_file(io.BytesIO(_crop_from_thumbnail(data, image, doc, site)), mimetype="image/jpeg", max_age=3600)

    @app.get("/img/cover/<person_id>.jpg")
    def cover_image(person_id: str) -> BaseResponse:
        person = _must(site.person_doc(person_id), "person")
        if found := _local(ctx.folder.cover(person_id)):
            return found
        if bucket is not None and person.get("cover_uploaded"):
            return _presigned(bucket, storage.person_key(person_id))
        if person.get("best_face_id"):
            return redirect(url_for("face_image", face_id=person["best_face_id"]))
        abort(404, "this person has no cover")


def _thumbnail_bytes(ctx: Context, image: dict[str, Any]) -> bytes | None:
    """The photo's thumbnail from the data folder, else from the store once uploaded."""
    path = ctx.folder.thumbnail(image["_id"])
    if path.is_file():
        return path.read_bytes()
    key = (image.get("keys") or {}).get("thumbnail")
    return ctx.store.get_bytes(key) if key and image.get("uploaded") else None


def _crop_from_thumbnail(data: bytes, image: dict[str, Any], face: dict[str, Any], site: Site) -> bytes:
    width, height = int(image.get("width") or 1), int(image.get("height") or 1)
    boxes = [f["box"] for f in site.lib.faces_of_image(image["_id"]) if f.get("box")]
    left, top, side = square_window(width, height, boxes)
    thumb = Image.open(io.BytesIO(data)).convert("RGB")
    scale = thumb.width / side
    x1, y1, x2, y2 = (float(v) for v in face.get("box") or (0, 0, 0, 0))
    half = max(x2 - x1, y2 - y1) * 0.75
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    window = [
        (cx - half - left) * scale,
        (cy - half - top) * scale,
        (cx + half - left) * scale,
        (cy + half - top) * scale,
    ]
    out = io.BytesIO()
    thumb.crop((window[0], window[1], window[2], window[3])).resize((FACE_SIZE, FACE_SIZE)).save(
        out, "JPEG", quality=85
    )
    return out.getvalue()
