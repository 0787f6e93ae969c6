"""Ticket settings fail closed: webhooks without a signing key are refused except in the demo, and
the environment is one of a closed set. Each row: the environment variables and the error expected."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.errors import ConfigError
from models.tickets.categories import TicketSettings

URLS = '["http://127.0.0.1:9/hook"]'


@pytest.mark.parametrize(
    ("env", "error", "message"),
    [
        ({}, None, None),
        ({"GRIDPATROL_WEBHOOK_SECRET": "s3cret"}, None, None),  # a key and no endpoint: harmless
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_WEBHOOK_SECRET": "s3cret"}, None, None),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_WEBHOOK_SECRET": "s3cret", "GRIDPATROL_ENVIRONMENT": "production"}, None, None),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_ENVIRONMENT": "demo"}, None, None),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS}, ConfigError, "GRIDPATROL_WEBHOOK_SECRET must be set"),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_WEBHOOK_SECRET": ""}, ConfigError, "GRIDPATROL_WEBHOOK_SECRET must be set"),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_ENVIRONMENT": "development"}, ConfigError, "GRIDPATROL_ENVIRONMENT=demo"),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_ENVIRONMENT": "production"}, ConfigError, "GRIDPATROL_WEBHOOK_SECRET"),
        ({"GRIDPATROL_WEBHOOK_URLS": URLS, "GRIDPATROL_ENVIRONMENT": "Demo"}, ValidationError, "development, production, demo"),
        ({"GRIDPATROL_ENVIRONMENT": "prod"}, ValidationError, "GRIDPATROL_ENVIRONMENT must be one of"),
    ],
)
def test_webhook_secret_and_environment(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], error: type[Exception] | None, message: str | None
) -> None:
    for name in ("GRIDPATROL_WEBHOOK_URLS", "GRIDPATROL_WEBHOOK_SECRET", "GRIDPATROL_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if error is None:
        settings = TicketSettings()
        assert settings.webhook_secret == env.get("GRIDPATROL_WEBHOOK_SECRET", "")
        return
    with pytest.raises(error) as caught:
        TicketSettings()
    assert message is not None and message in str(caught.value)


def test_start_up_fails_with_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The entry points build every section at start: the whole ``Settings`` refuses to load."""
    from gridpatrol.settings import Settings

    for name in ("GRIDPATROL_WEBHOOK_SECRET", "GRIDPATROL_ENVIRONMENT", "GRIDPATROL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_URLS", URLS)
    with pytest.raises(ConfigError, match="GRIDPATROL_WEBHOOK_SECRET"):
        Settings.from_env()
    monkeypatch.setenv("GRIDPATROL_ENVIRONMENT", "demo")
    assert Settings.from_env().tickets.webhook_urls == ["http://127.0.0.1:9/hook"]
