"""Object storage: an S3-compatible bucket (R2 in production) or a folder with the same keys.

Keys are built here and only here, from ids FacePic derives itself, so no part of a
photo's name can ever reach a key.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from facepic import ids
from facepic.datafolder import write_atomic
from facepic.errors import FacePicError
from facepic.settings import Settings

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
FACEPIC_KEY = re.compile(rf"^(?:{_UUID}\.[a-z0-9]{{1,5}}|thumb_{_UUID}\.jpg|faces/person_p[0-9a-f]{{15}}\.jpg)$")


def original_key(image_id: str, ext: str) -> str:
    return f"{image_id}.{ext}"


def thumbnail_key(image_id: str) -> str:
    return f"thumb_{image_id}.jpg"


def person_key(person_id: str) -> str:
    return f"faces/person_{person_id}.jpg"


def is_facepic_key(key: str) -> bool:
    return bool(FACEPIC_KEY.match(key))


class StorageError(FacePicError):
    """The object store refused or could not be reached; the message holds no secret."""


class StorageUnavailable(StorageError):
    """A transient failure worth retrying (connection refused, timeout, 5xx)."""

    setting = "s3_endpoint"  # what the user checks: the CLI names it and where it came from


def content_changed(what: str) -> StorageError:
    """A put whose bytes are not those of the SHA-256 the caller gave: nothing was stored."""
    return StorageError(
        f"the object store refused {what}: its bytes differ from the SHA-256 taken when it was "
        "scanned (the file changed since, or was read or sent wrong)"
    )


class ObjectStore(Protocol):
    def ensure_bucket(self) -> None: ...
    def put_file(self, key: str, path: Path, content_type: str, sha256: str | None = None) -> None: ...
    def put_bytes(self, key: str, data: bytes, content_type: str) -> None: ...
    def get_bytes(self, key: str) -> bytes: ...
    def list_keys(self, prefix: str = "") -> Iterator[str]: ...
    def delete_keys(self, keys: Iterable[str]) -> int: ...
    def describe(self) -> str: ...


class FolderStore:
    """Objects as files under a folder, for the embedded default with no bucket."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"folder {self.root}"

    def ensure_bucket(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if not is_facepic_key(key):
            raise StorageError(f"refusing a key FacePic does not make: {key!r}")
        return self.root / key

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        write_atomic(self._path(key), data)

    def put_file(self, key: str, path: Path, content_type: str, sha256: str | None = None) -> None:
        data = Path(path).read_bytes()
        if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
            raise content_changed(key)
        self.put_bytes(key, data, content_type)

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        if not self.root.is_dir():
            return
        for path in sorted(self.root.rglob("*")):
            if path.is_file() and not path.name.startswith(".tmp-"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    yield key

    def delete_keys(self, keys: Iterable[str]) -> int:
        count = 0
        for key in keys:
            path = self._path(key)
            if path.exists():
                path.unlink()
                count += 1
        return count


SINGLE_PUT_LIMIT = 64 * 1024 * 1024


class S3Store:
    """A bucket through boto3, path-style addressing, credentials from Settings only."""

    def __init__(
        self,
        endpoint: str,
        region: str,
        bucket: str,
        access_key_id: str,
        secret_access_key: str,
        public_endpoint: str = "",
    ) -> None:
        self.endpoint = endpoint or "https://s3.amazonaws.com"
        self.bucket = bucket
        self._client = self._connect(endpoint, region, access_key_id, secret_access_key)
        # Links for a browser are signed for the address the browser uses.
        self._links = (
            self._connect(public_endpoint, region, access_key_id, secret_access_key)
            if public_endpoint and public_endpoint != endpoint
            else self._client
        )

    @staticmethod
    def _connect(endpoint: str, region: str, access_key_id: str, secret_access_key: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=endpoint or None,
            region_name=region or "auto",
            aws_access_key_id=access_key_id or None,
            aws_secret_access_key=secret_access_key or None,
            config=Config(
                # Every single PUT carries the SHA-256 of its body in a signed header, which
                # the bucket checks (_put): hashing the body again for the signature, as
                # botocore otherwise does on http://, would protect nothing more.
                s3={"addressing_style": "path", "payload_signing_enabled": False},
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
            ),
        )

    def describe(self) -> str:
        return f"bucket {self.bucket!r} at {self.endpoint}"

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - every boto error becomes one clear line
            raise self._translate(e, what) from None

    def _translate(self, e: Exception, what: str) -> Exception:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        if isinstance(e, EndpointConnectionError):
            return StorageUnavailable(f"cannot reach the object store at {self.endpoint}")
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = int(e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
            if code in ("BadDigest", "XAmzContentChecksumMismatch"):
                return content_changed(what)
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403"):
                return StorageError(
                    f"the object store at {self.endpoint} rejected the credentials for "
                    f"{what} (check FACEPIC_S3_ACCESS_KEY_ID and FACEPIC_S3_SECRET_ACCESS_KEY)"
                )
            if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
                return StorageUnavailable(f"object store error {code or status} on {what}")
            return StorageError(f"object store error {code or status} on {what}")
        if isinstance(e, BotoCoreError):
            return StorageUnavailable(f"object store failure on {what}: {type(e).__name__}")
        return e

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (a local S3 server); fail clearly on bad keys."""
        from botocore.exceptions import ClientError

        what = f"bucket {self.bucket!r}"
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as e:
            if str(e.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchBucket", "NotFound"):
                raise self._translate(e, what) from None
        except Exception as e:  # noqa: BLE001
            raise self._translate(e, what) from None
        self._call(f"creating {what}", self._client.create_bucket, Bucket=self.bucket)

    def _put(self, key: str, body: BinaryIO | bytes, content_type: str, digest: bytes) -> None:
        """One PUT that the bucket stores only if its bytes have the SHA-256 ``digest``."""
        checksum = base64.b64encode(digest).decode()
        self._call(
            key,
            self._client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=body,
            ContentType=content_type,
            ChecksumSHA256=checksum,
        )

    def put_bytes(self, key: str, data: bytes, content_type: str) -> None:
        self._put(key, data, content_type, hashlib.sha256(data).digest())

    def put_file(self, key: str, path: Path, content_type: str, sha256: str | None = None) -> None:
        """``sha256``: the hex digest the file had when scanned; the bucket refuses other bytes
        (content_changed). Without it the file is hashed here."""
        # One PUT for a photo-sized file: the transfer manager's threads and parts only pay
        # off for large files (bench/throughput.py, enqueue: upload median 61 -> 51 ms).
        if path.stat().st_size < SINGLE_PUT_LIMIT:
            digest = bytes.fromhex(sha256 or ids.sha256_file(path))
            with open(path, "rb") as body:
                self._put(key, body, content_type, digest)
            return
        # A multipart upload has no SHA-256 of the whole object for the bucket to check: the
        # file is checked here instead, just before it goes.
        if sha256 and ids.sha256_file(path) != sha256:
            raise content_changed(key)
        self._call(
            key,
            self._client.upload_file,
            str(path),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
        )

    def get_bytes(self, key: str) -> bytes:
        body = self._call(key, self._client.get_object, Bucket=self.bucket, Key=key)["Body"]
        return body.read()

    def presigned_url(self, key: str, seconds: int = 300) -> str:
        """A URL that reads ``key`` for ``seconds``, without the bucket's keys: for a browser, at
        the public endpoint when there is one."""
        return self._call(
            key,
            self._links.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=seconds,
        )

    def list_keys(self, prefix: str = "") -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = self._call("listing", lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"]

    def delete_keys(self, keys: Iterable[str]) -> int:
        batch: list[str] = []
        count = 0
        for key in keys:
            batch.append(key)
            if len(batch) == 1000:
                count += self._delete(batch)
                batch = []
        if batch:
            count += self._delete(batch)
        return count

    def _delete(self, keys: list[str]) -> int:
        self._call(
            "delete",
            self._client.delete_objects,
            Bucket=self.bucket,
            Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
        )
        return len(keys)


def open_store(settings: Settings) -> ObjectStore:
    if settings.bucket_configured:
        return S3Store(
            settings.s3_endpoint,
            settings.s3_region,
            settings.s3_bucket,
            settings.s3_access_key_id,
            settings.s3_secret_access_key,
            settings.s3_public_endpoint,
        )
    return FolderStore(settings.folder.objects)


CONTENT_TYPES = {
    "jpg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
    "avif": "image/avif",
    "tif": "image/tiff",
    "gif": "image/gif",
    "bmp": "image/bmp",
    "dng": "image/x-adobe-dng",
}
