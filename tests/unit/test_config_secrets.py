"""Secrets come from the environment or from files in RECSTACK_SECRETS_DIR, and never show in `repr`."""

from __future__ import annotations

from pathlib import Path

import pytest

from recstack.config import Settings, redact_url


def test_a_secret_file_provides_the_setting_and_repr_hides_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "database_url").write_text("postgresql://app:s3cret@db:5432/recstack")
    monkeypatch.setenv("RECSTACK_SECRETS_DIR", str(secrets))
    monkeypatch.delenv("RECSTACK_DATABASE_URL", raising=False)
    settings = Settings(home=tmp_path)
    assert settings.database_url == "postgresql://app:s3cret@db:5432/recstack"
    assert "s3cret" not in repr(settings) and "app:***@db:5432" in repr(settings)
    monkeypatch.setenv("RECSTACK_DATABASE_URL", "postgresql://env:other@db/recstack")
    assert Settings(home=tmp_path).database_url == "postgresql://env:other@db/recstack", "the environment wins"


def test_urls_lose_only_their_password() -> None:
    assert redact_url("redis://:pw@cache:6379/0") == "redis://:***@cache:6379/0"
    assert redact_url("sqlite:///var/recstack.db") == "sqlite:///var/recstack.db"
    assert redact_url("not a url") == "not a url"


def test_auth_is_on_unless_set_to_none() -> None:
    assert Settings().auth == "keys"
    assert Settings(auth="none").auth == "none"
    with pytest.raises(ValueError):
        Settings(auth="off")  # type: ignore[arg-type]
