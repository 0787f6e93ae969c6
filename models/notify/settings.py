"""The installation's notification settings: the UI's address, robot endpoints, SMTP and the SMS gateway."""

from __future__ import annotations

import re

from pydantic import Field, SecretStr, field_validator

from models.settings import LocaleSettings

_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class NotifySettings(LocaleSettings):
    notify_base_url: str = Field(
        default="http://localhost:8000",
        description="The web UI's address as people's phones reach it; messages link to <this>/#/tickets/<id>",
    )
    notify_wecom_url: str = Field(
        default="https://qyapi.weixin.qq.com/cgi-bin/webhook/send",
        description="WeCom group robot endpoint (the robot's key is added as ?key=); an intranet proxy may stand in",
    )
    notify_dingtalk_url: str = Field(
        default="https://oapi.dingtalk.com/robot/send",
        description="DingTalk robot endpoint (access_token, timestamp and sign are added to the query)",
    )
    smtp_host: str = Field(
        default="", description="SMTP server for e-mail notifications (empty: e-mail is off)"
    )
    smtp_port: int = Field(
        default=25, ge=1, le=65535, description="SMTP port (587 with STARTTLS, 465 with SSL)"
    )
    smtp_security: str = Field(default="none", description="none | starttls | ssl")
    smtp_username: str = Field(default="", description="SMTP login (empty: no login)")
    smtp_password: SecretStr = Field(default=SecretStr(""), description="SMTP password")
    smtp_from: str = Field(default="gridpatrol@localhost", description="From address of notification e-mails")
    sms_url: str = Field(default="", description="SMS gateway URL receiving a JSON POST (empty: SMS is off)")
    sms_body: str = Field(
        default='{"phone": "{phone}", "content": "{text}"}',
        description="JSON body template of the SMS gateway; {phone} and {text} are replaced (JSON-escaped)",
    )
    sms_token: SecretStr = Field(
        default=SecretStr(""), description="Sent as 'Authorization: Bearer <token>' when set"
    )
    notify_max_attempts: int = Field(
        default=8, ge=1, le=100, description="Attempts before a delivery fails for good"
    )
    notify_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Timeout of one send (HTTP or SMTP)"
    )
    notify_summary_at: str = Field(default="08:00", description="Local time (HH:MM) of the daily summary")

    @field_validator("smtp_security")
    @classmethod
    def _security(cls, value: str) -> str:
        if value not in {"none", "starttls", "ssl"}:
            raise ValueError(f"GRIDPATROL_SMTP_SECURITY must be none, starttls or ssl (got {value!r})")
        return value

    @field_validator("notify_summary_at")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError(f"GRIDPATROL_NOTIFY_SUMMARY_AT must be HH:MM (got {value!r})")
        return value
