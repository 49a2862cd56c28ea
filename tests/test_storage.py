import base64
import hashlib
from pathlib import Path

import pytest

from facepic.storage import FolderStore, S3Store, StorageError, StorageUnavailable, is_facepic_key
from tests import servers

UUID = "6ad6e29e-4449-54e3-8841-aabb7aff5901"


def test_facepic_keys_are_recognised_and_nothing_else() -> None:
    assert is_facepic_key(f"{UUID}.jpg")
    assert is_facepic_key(f"thumb_{UUID}.jpg")
    assert is_facepic_key("faces/person_p0123456789abcde.jpg")
    for foreign in ("holiday.jpg", f"../{UUID}.jpg", f"x/{UUID}.jpg", f"thumb_{UUID}.png", "faces/other.jpg"):
        assert not is_facepic_key(foreign)


def test_folder_store_round_trip_and_refuses_foreign_keys(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "objects")
    store.put_bytes(f"thumb_{UUID}.jpg", b"abc", "image/jpeg")
    store.put_bytes("faces/person_p0123456789abcde.jpg", b"d", "image/jpeg")
    assert list(store.list_keys()) == ["faces/person_p0123456789abcde.jpg", f"thumb_{UUID}.jpg"]
    assert store.get_bytes(f"thumb_{UUID}.jpg") == b"abc"
    with pytest.raises(StorageError):
        store.put_bytes("../escape.jpg", b"x", "image/jpeg")
    assert store.delete_keys([f"thumb_{UUID}.jpg"]) == 1


def s3(endpoint: str, bucket: str, secret: str = servers.S3_SECRET_KEY, public: str = "") -> S3Store:
    return S3Store(endpoint, "auto", bucket, servers.S3_ACCESS_KEY, secret, public)


def test_s3_store_creates_bucket_puts_lists_and_deletes(s3_server: str, tmp_path: Path) -> None:
    store = s3(s3_server, "facepic-storage-test")
    store.ensure_bucket()
    store.ensure_bucket()  # already there: no error
    f = tmp_path / "a.jpg"
    f.write_bytes(b"original")
    store.put_file(f"{UUID}.jpg", f, "image/jpeg")
    store.put_bytes(f"thumb_{UUID}.jpg", b"t", "image/jpeg")
    assert sorted(store.list_keys()) == [f"{UUID}.jpg", f"thumb_{UUID}.jpg"]
    assert store.get_bytes(f"{UUID}.jpg") == b"original"
    store.put_file(f"{UUID}.jpg", f, "image/jpeg")  # a retried upload overwrites the same key
    assert len(list(store.list_keys())) == 2
    store.delete_keys([f"{UUID}.jpg", f"thumb_{UUID}.jpg"])
    assert list(store.list_keys()) == []


def test_s3_wrong_credentials_are_one_clear_error_without_the_secret(s3_server: str) -> None:
    wrong = "this-secret-must-not-leak"
    with pytest.raises(StorageError) as info:
        s3(s3_server, "facepic-storage-test", secret=wrong).ensure_bucket()
    assert "rejected the credentials" in str(info.value)
    assert wrong not in str(info.value) and info.value.__cause__ is None


def test_s3_unreachable_is_a_retryable_error() -> None:
    store = s3(f"http://127.0.0.1:{servers.free_port()}", "facepic-nowhere")
    with pytest.raises(StorageUnavailable, match="cannot reach"):
        store.ensure_bucket()


def test_a_put_stores_only_the_bytes_of_the_sha256_it_was_given(s3_server: str, tmp_path: Path) -> None:
    """An original goes up with the SHA-256 its scan took: a file that changed since (same size,
    other bytes, as a flaky drive may read) is refused by the bucket and nothing is stored."""
    store = s3(s3_server, "facepic-checksum-test")
    store.ensure_bucket()
    f = tmp_path / "a.jpg"
    f.write_bytes(b"original bytes")
    scanned = hashlib.sha256(f.read_bytes()).hexdigest()
    store.put_file(f"{UUID}.jpg", f, "image/jpeg", sha256=scanned)
    f.write_bytes(b"Original bytes")  # changed after the scan, same size
    other = UUID.replace("6ad6", "7ad6")
    with pytest.raises(StorageError, match="bytes differ from the SHA-256 taken when it was scanned"):
        store.put_file(f"{other}.jpg", f, "image/jpeg", sha256=scanned)
    assert sorted(store.list_keys()) == [f"{UUID}.jpg"]
    assert store.get_bytes(f"{UUID}.jpg") == b"original bytes"
    # Every PUT carries its body's SHA-256 (computed here when no scan gave one), and the
    # bucket keeps it: the header was sent and checked, not dropped.
    store.put_bytes(f"thumb_{UUID}.jpg", b"t", "image/jpeg")
    store.put_file(f"{other}.jpg", f, "image/jpeg")
    for key, data in (
        (f"{UUID}.jpg", b"original bytes"),
        (f"thumb_{UUID}.jpg", b"t"),
        (f"{other}.jpg", b"Original bytes"),
    ):
        head = store._client.head_object(Bucket=store.bucket, Key=key, ChecksumMode="ENABLED")
        assert base64.b64decode(head["ChecksumSHA256"]) == hashlib.sha256(data).digest(), key


def test_the_folder_store_refuses_the_same_changed_file(tmp_path: Path) -> None:
    store = FolderStore(tmp_path / "objects")
    f = tmp_path / "a.jpg"
    f.write_bytes(b"original bytes")
    scanned = hashlib.sha256(f.read_bytes()).hexdigest()
    store.put_file(f"{UUID}.jpg", f, "image/jpeg", sha256=scanned)
    f.write_bytes(b"Original bytes")
    with pytest.raises(StorageError, match="bytes differ"):
        store.put_file(f"{UUID}.jpg", f, "image/jpeg", sha256=scanned)
    assert store.get_bytes(f"{UUID}.jpg") == b"original bytes"


def test_links_for_a_browser_are_signed_for_the_public_endpoint(s3_server: str) -> None:
    """Containers reach the bucket by a service name no browser resolves: the web page's links
    to originals use FACEPIC_S3_PUBLIC_ENDPOINT, and they open there."""
    import urllib.request

    public = s3_server.replace("127.0.0.1", "localhost")
    store = s3(s3_server, "facepic-links-test", public=public)
    store.ensure_bucket()
    store.put_bytes(f"{UUID}.jpg", b"the original", "image/jpeg")
    url = store.presigned_url(f"{UUID}.jpg")
    assert url.startswith(public + "/") and servers.S3_SECRET_KEY not in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == b"the original"
    assert s3(s3_server, "facepic-links-test").presigned_url(f"{UUID}.jpg").startswith(s3_server + "/")


def test_a_file_too_big_for_one_put_is_checked_before_its_multipart_upload(
    s3_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from facepic import storage

    monkeypatch.setattr(storage, "SINGLE_PUT_LIMIT", 8)
    store = s3(s3_server, "facepic-multipart-test")
    store.ensure_bucket()
    f = tmp_path / "a.jpg"
    f.write_bytes(b"original bytes")
    scanned = hashlib.sha256(f.read_bytes()).hexdigest()
    f.write_bytes(b"Original bytes")
    with pytest.raises(StorageError, match="bytes differ"):
        store.put_file(f"{UUID}.jpg", f, "image/jpeg", sha256=scanned)
    assert list(store.list_keys()) == []
    store.put_file(f"{UUID}.jpg", f, "image/jpeg", sha256=hashlib.sha256(b"Original bytes").hexdigest())
    assert store.get_bytes(f"{UUID}.jpg") == b"Original bytes"
