from pathlib import Path

import pytest

from facepic.settings import Settings, redact


def test_env_file_then_environment_then_arguments(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nFACEPIC_MONGODB_DB=fromfile\nFACEPIC_MATCH_THRESHOLD=0.5\n"
        "FACEPIC_S3_REGION='eu'\nexport FACEPIC_UPLOAD=false\nFACEPIC_DATA_DIR=~/photos-data\n"
    )
    s = Settings.load(env={"FACEPIC_MATCH_THRESHOLD": "0.6"}, env_file=env_file)
    assert s.mongodb_db == "fromfile"
    assert s.match_threshold == 0.6
    assert s.s3_region == "eu"
    assert s.upload is False
    assert s.data_dir == Path.home() / "photos-data"
    assert Settings.load(env={}, env_file=env_file, mongodb_db="arg").mongodb_db == "arg"


def test_defaults() -> None:
    s = Settings.load(env={"XDG_DATA_HOME": "/x"}, env_file=None)
    assert (s.mongodb_db, s.s3_bucket, s.s3_region, s.match_threshold, s.model) == (
        "facepic",
        "facepic",
        "auto",
        0.4,
        "auto",
    )
    assert s.data_dir == Path("/x/facepic")
    assert s.ledger_path == Path("/x/facepic/processed_log.jsonl")
    assert not s.bucket_configured


def test_bad_values_are_one_clear_error() -> None:
    with pytest.raises(ValueError, match="FACEPIC_UPLOAD must be true or false"):
        Settings.load(env={"FACEPIC_UPLOAD": "perhaps"}, env_file=None)
    with pytest.raises(ValueError, match="FACEPIC_MATCH_THRESHOLD must be a number"):
        Settings.load(env={"FACEPIC_MATCH_THRESHOLD": "high"}, env_file=None)


def test_secrets_never_show_in_repr_and_are_redacted() -> None:
    s = Settings.load(
        env={
            "FACEPIC_S3_SECRET_ACCESS_KEY": "sekrit-123",
            "FACEPIC_S3_ACCESS_KEY_ID": "AKIDXYZ",
            "FACEPIC_MONGODB_URI": "mongodb+srv://user:pa55word@cluster.example.net/",
        },
        env_file=None,
    )
    text = repr(s)
    for secret in ("sekrit-123", "AKIDXYZ", "pa55word"):
        assert secret not in text
    assert redact("failed with sekrit-123 and pa55word", s) == "failed with *** and ***"


def test_redact_masks_only_whole_secrets_long_enough_to_be_one() -> None:
    s = Settings.load(
        env={"FACEPIC_S3_SECRET_ACCESS_KEY": "store", "FACEPIC_WEB_AUTH": "ann:pa55word-and-more"},
        env_file=None,
    )
    assert redact("cannot reach the object store", s) == "cannot reach the object store"
    s = Settings.load(
        env={"FACEPIC_S3_SECRET_ACCESS_KEY": "pa55word", "FACEPIC_WEB_AUTH": "ann:pa55word-and-more"},
        env_file=None,
    )
    assert redact("login pa55word-and-more, key pa55word", s) == "login ***, key ***"
