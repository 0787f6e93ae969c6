"""The API settings fail closed: ``environment`` is one of a closed set, and production refuses a
default or short signing key. Each row: the environment variables, and the error expected (or None)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import DEFAULT_SECRET, ApiSettings
from models.errors import ConfigError

GOOD_KEY = "Zq8-vR2mT5xW9bN4kL7pY3cF6hJ1dG0s"  # "k" * 40 is refused as repetitive now


@pytest.mark.parametrize(
    ("env", "error", "message"),
    [
        ({}, None, None),
        ({"GRIDPATROL_ENVIRONMENT": "development"}, None, None),
        ({"GRIDPATROL_ENVIRONMENT": "demo"}, None, None),
        ({"GRIDPATROL_ENVIRONMENT": "production", "GRIDPATROL_SECRET_KEY": GOOD_KEY}, None, None),
        # no key: an embedded installation generates one, a distributed one refuses (gridpatrol/signing_key.py)
        ({"GRIDPATROL_ENVIRONMENT": "production"}, None, None),
        ({"GRIDPATROL_ENVIRONMENT": "production", "GRIDPATROL_SECRET_KEY": DEFAULT_SECRET}, ConfigError, "GRIDPATROL_SECRET_KEY"),
        ({"GRIDPATROL_ENVIRONMENT": "production", "GRIDPATROL_SECRET_KEY": "short"}, ConfigError, "at least 32"),
        # the typos that used to skip the production checks silently
        ({"GRIDPATROL_ENVIRONMENT": "prod"}, ValidationError, "environment"),
        ({"GRIDPATROL_ENVIRONMENT": "Production"}, ValidationError, "development, production, demo"),
        ({"GRIDPATROL_ENVIRONMENT": "production "}, ValidationError, "got 'production '"),
        ({"GRIDPATROL_ENVIRONMENT": ""}, ValidationError, "GRIDPATROL_ENVIRONMENT must be one of"),
    ],
)
def test_environment_and_secret(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], error: type[Exception] | None, message: str | None
) -> None:
    monkeypatch.delenv("GRIDPATROL_ENVIRONMENT", raising=False)
    monkeypatch.delenv("GRIDPATROL_SECRET_KEY", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if error is None:
        assert ApiSettings().environment == env.get("GRIDPATROL_ENVIRONMENT", "development")
        return
    with pytest.raises(error) as caught:
        ApiSettings()
    assert message is not None and message in str(caught.value)


def test_unknown_environment_error_names_the_field_and_the_choices() -> None:
    with pytest.raises(ValidationError) as caught:
        ApiSettings(environment="staging")  # type: ignore[arg-type]
    (err,) = caught.value.errors()
    assert err["loc"] == ("environment",)
    assert "GRIDPATROL_ENVIRONMENT must be one of development, production, demo (got 'staging')" in err["msg"]
