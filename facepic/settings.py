"""FacePic's one settings object, read from the environment and `.env`.

Nothing else in FacePic reads ``os.environ``. Every field can also be passed to
``Settings.load(**overrides)``, which is what the tests do.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from facepic.datafolder import DataFolder

from facepic.errors import FacePicError

PREFIX = "FACEPIC_"
RUNTIMES = ("auto", "openvino", "onnxruntime")  # where the face models run: facepic.runtime


class SettingsError(FacePicError, ValueError):
    """A setting whose value cannot be used; the message names it."""


class Secret(str):
    """A string that never shows its value in repr, logs or error messages."""

    def __repr__(self) -> str:
        return "Secret('***')" if self else "Secret('')"


def _default_data_dir(env: Mapping[str, str]) -> Path:
    base = env.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "facepic"


@dataclass(frozen=True)
class Settings:
    # Folders.
    import_dir: Path | None = None
    data_dir: Path = field(default_factory=lambda: _default_data_dir(os.environ))
    # Servers. An empty MongoDB URI means "embedded" for `facepic run`.
    redis_url: str = "redis://localhost:6379/0"
    mongodb_uri: Secret = Secret("")
    mongodb_db: str = "facepic"
    # Bucket. With neither endpoint nor keys, objects go to a folder under data_dir.
    s3_endpoint: str = ""
    s3_region: str = "auto"
    s3_bucket: str = "facepic"
    s3_access_key_id: Secret = Secret("")
    s3_secret_access_key: Secret = Secret("")
    # Where a browser reaches the bucket, for the web page's links to originals, when that is not
    # s3_endpoint (a container's service name, say). Empty: s3_endpoint.
    s3_public_endpoint: str = ""
    # Faces.
    model: str = "auto"
    model_root: Path = field(default_factory=lambda: Path.home() / ".insightface")
    detect_size: int = 640
    runtime: str = "auto"  # auto, openvino or onnxruntime (facepic.runtime)
    ort_threads: int = 0  # threads per process, either runtime; 0: cores divided by the processes
    match_threshold: float = 0.4  # the most similar face of a person (the design's rule)
    match_mean_threshold: float = 0.25  # the mean similarity to all faces of a person
    ambiguity_margin: float = 0.03  # best and runner-up persons closer than this: decide later
    link_threshold: float = 0.23  # settling: groups join above this mean similarity in a library of 100 persons ...
    link_margin: float = 0.1  # ... plus this over sqrt(faces a x faces b)
    link_per_decade: float = 0.055  # ... the floor moving by this per tenfold more (or fewer) persons
    min_face_size: float = 40.0  # pixels; smaller faces never found a person on their own
    min_face_score: float = 0.55
    min_face_sharpness: float = 50.0
    # Pipeline.
    upload: bool = True
    # Without a bucket, originals stay where they are; true copies them into objects_dir.
    copy_originals: bool = False
    follow_links: bool = False  # follow symbolic links that leave the import folder
    import_xmp_names: bool = True  # names of XMP face regions (embedded, sidecars) become corrections
    max_pixels: int = 150_000_000
    photo_timeout: float = 60.0  # seconds to decode and detect one photo
    workers: int = 0  # processes for `facepic run`; 0: one per core
    # Transient failures (MongoDB or the bucket unreachable): retries, backoff base in seconds.
    retries: int = 8
    retry_backoff: float = 2.0
    db_timeout: float = 10.0  # seconds to wait for MongoDB before an attempt fails
    # The embedded database: seconds it stays up for the next command once no command uses it
    # (`facepic persons`, `name`...: a second less each); 0: it stops with each command.
    db_linger: float = 300.0
    visibility_timeout: int = 600  # seconds before a dead worker's task is delivered again
    # `facepic serve`: the login (user:password), required beyond loopback; where it listens.
    web_auth: Secret = Secret("")
    web_bind: str = "127.0.0.1"
    web_port: int = 8000

    def __post_init__(self) -> None:
        runtime = str(self.runtime).strip().lower()
        if runtime not in RUNTIMES:
            raise SettingsError(
                f"{PREFIX}RUNTIME must be {', '.join(RUNTIMES[:-1])} or {RUNTIMES[-1]}, not {self.runtime!r}"
            )
        object.__setattr__(self, "runtime", runtime)
        if not 0 <= float(self.db_linger) <= 86_400:  # NaN fails both
            raise SettingsError(f"{PREFIX}DB_LINGER must be 0 to 86400 seconds, not {self.db_linger!r}")

    @classmethod
    def defaults(cls) -> Settings:
        """Every setting at its default, read from nothing."""
        return cls(data_dir=Path("."), model_root=Path("."))

    @property
    def folder(self) -> DataFolder:
        """The data folder's layout (facepic.datafolder)."""
        from facepic.datafolder import DataFolder

        return DataFolder(self.data_dir)

    @property
    def ledger_path(self) -> Path:
        return self.folder.ledger

    @property
    def bucket_configured(self) -> bool:
        return bool(self.s3_endpoint or self.s3_access_key_id)

    @property
    def stores_originals(self) -> bool:
        """Whether photos go to an object store: a bucket, or the folder store when asked."""
        return self.upload and (self.bucket_configured or self.copy_originals)

    @property
    def sources(self) -> dict[str, str]:
        """Where each value set from outside came from: field -> "the environment" or a .env path."""
        return getattr(self, "_sources", {})

    def _with_sources(self, sources: dict[str, str]) -> Settings:
        object.__setattr__(self, "_sources", dict(sources))  # not a setting: kept beside the fields
        return self

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)._with_sources(self.sources)

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        env_file: str | Path | None = ".env",
        **overrides: Any,
    ) -> Settings:
        """Settings from `.env`, then the environment, then ``overrides`` (last wins)."""
        environ = dict(os.environ if env is None else env)
        values: dict[str, str] = {}
        origin: dict[str, str] = {}
        if env_file is not None and Path(env_file).is_file():
            from_file = read_env_file(Path(env_file))
            values.update(from_file)
            origin.update({k: str(Path(env_file).absolute()) for k in from_file})
        from_env = {k: v for k, v in environ.items() if k.startswith(PREFIX)}
        values.update(from_env)
        origin.update({k: "the environment" for k in from_env})
        kwargs: dict[str, Any] = {}
        sources: dict[str, str] = {}
        types = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            raw = values.get(PREFIX + f.name.upper())
            if raw is not None and raw != "":
                kwargs[f.name] = _convert(f.name, types[f.name], raw)
                sources[f.name] = origin[PREFIX + f.name.upper()]
        if "data_dir" not in kwargs:
            kwargs["data_dir"] = _default_data_dir(environ)
        for name, value in overrides.items():
            if value is not None:
                kwargs[name] = _convert(name, types[name], value) if isinstance(value, str) else value
        return cls(**kwargs)._with_sources(sources)

    def origin(self, name: str) -> str:
        """``FACEPIC_X (set in /path/.env)``: which setting, and where its value came from."""
        where = self.sources.get(name)
        key = PREFIX + name.upper()
        if where is None:
            return f"{key} (not set: the default)"
        return f"{key} (set in {where})" if where != "the environment" else f"{key} (set in the environment)"

    def secrets(self) -> list[str]:
        """Every secret value in force, so that output can be scrubbed of them."""
        found = [
            self.s3_access_key_id,
            self.s3_secret_access_key,
            _uri_password(self.mongodb_uri),
            _uri_password(self.redis_url),
            self.web_auth.partition(":")[2],
        ]
        return [s for s in found if s]


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("not a boolean")


# A field's type decides how its text is read: one converter per type, no guessing by name.
CONVERTERS: dict[Any, tuple[Callable[[str], Any], str]] = {
    bool: (_boolean, "true or false"),
    int: (int, "a whole number"),
    float: (float, "a number"),
    str: (str, "text"),
    Secret: (Secret, "text"),
    Path: (lambda raw: Path(raw).expanduser(), "a path"),
}


def _convert(name: str, kind: Any, raw: str) -> Any:
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Path | None
        kind = next(a for a in typing.get_args(kind) if a is not type(None))
    convert, expected = CONVERTERS[kind]
    try:
        return convert(raw)
    except ValueError:
        raise SettingsError(f"{PREFIX}{name.upper()} must be {expected}, not {raw!r}") from None


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments ignored; optional quotes stripped."""
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        key = key.strip().removeprefix("export ").strip()
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def _uri_password(uri: str) -> str:
    if "://" not in uri or "@" not in uri:
        return ""
    userinfo = uri.split("://", 1)[1].rsplit("@", 1)[0]
    return userinfo.split(":", 1)[1] if ":" in userinfo else ""


MIN_MASKED = 8  # a shorter secret is too likely an everyday word ('store') to mask in prose


def redact(text: str, settings: Settings) -> str:
    """``text`` with every secret of ``settings`` of MIN_MASKED characters or more replaced,
    whole, by *** (the longest first: a secret holding another is never half masked)."""
    for secret in sorted(settings.secrets(), key=len, reverse=True):
        if len(secret) >= MIN_MASKED:
            text = text.replace(secret, "***")
    return text
