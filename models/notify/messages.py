"""The text of a notification, in Chinese: what happened, the category, the place, the deadline and a link.

Text only, with a link into the UI: never a camera credential and never an image, because a message
leaves the access checks behind (a robot posts to a whole group); the UI checks who opens the link.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from models.notify.kinds import KIND_NAMES

CATEGORY_NAMES = {
    "road_occupation": "占道经营",
    "fire_lane_blockage": "消防通道堵塞",
    "crowding": "人员聚集",
    "other": "其他",
}
#: the headline of each kind (the event that happened)
HEADLINES = {
    "assigned": "新工单派给您",
    "escalated": "工单已升级给您",
    "overdue": "工单超时",
    "reopened": "工单重新打开",
    "linkage": "联动请求（协办）",
    "daily_summary": "每日工单汇总",
    "test": "测试消息",
    "camera.offline": "摄像头离线",
    "camera.online": "摄像头恢复在线",
}


@dataclass(frozen=True)
class Message:
    """One rendered message: ``title`` (e-mail subject, robot card title), ``lines`` of ``label：value``."""

    title: str
    lines: tuple[str, ...]
    link: str

    @property
    def text(self) -> str:
        """Plain text (SMS, text robots, e-mail body)."""
        return "\n".join(
            (f"【网格巡查】{self.title}", *self.lines, *((f"查看：{self.link}",) if self.link else ()))
        )

    @property
    def markdown(self) -> str:
        """Markdown for the WeCom and DingTalk robots (both render headings, bold and links)."""
        body = [f"### {self.title}", *(f"> {line}" for line in self.lines)]
        if self.link:
            body.append(f"[在系统中查看]({self.link})")
        return "\n".join(body)


def local_time(value: str | None, tz: ZoneInfo) -> str:
    if not value:
        return ""
    return datetime.fromisoformat(value).astimezone(tz).strftime("%Y-%m-%d %H:%M:%S")


def render(kind: str, payload: dict[str, Any], *, base_url: str, tz: ZoneInfo) -> Message:
    """The message for one delivery row (``payload`` as written by models/notify/outbox.py)."""
    base = base_url.rstrip("/")
    if kind == "daily_summary":
        return _summary(payload, base=base)
    if kind == "camera_offline":
        return _camera(payload, base=base, tz=tz)
    if kind == "test":
        return Message(
            title=HEADLINES["test"],
            lines=("这是一条测试消息：此渠道可以收到工单通知。",),
            link=f"{base}/#/settings/notifications",
        )
    lines = []
    code = payload.get("case_code") or ""
    category = CATEGORY_NAMES.get(str(payload.get("category")), str(payload.get("category") or ""))
    lines.append(
        f"工单：#{payload.get('ticket_id')} {category}" + (f"（{code}）" if code and code != category else "")
    )
    if payload.get("place"):
        lines.append(f"地点：{payload['place']}")
    if payload.get("camera"):
        lines.append(f"摄像头：{payload['camera']}")
    if payload.get("deadline"):
        lines.append(f"{payload.get('deadline_label') or '时限'}：{local_time(payload['deadline'], tz)}")
    if payload.get("note"):
        lines.append(f"说明：{payload['note']}")
    title = f"{HEADLINES.get(kind, KIND_NAMES.get(kind, kind))}：{category}"
    return Message(title=title, lines=tuple(lines), link=f"{base}/#/tickets/{payload.get('ticket_id')}")


def _summary(payload: dict[str, Any], *, base: str) -> Message:
    lines = (
        f"日期：{payload.get('day', '')}",
        f"待办工单：{payload.get('open', 0)} 件（其中超时 {payload.get('overdue', 0)} 件）",
        f"昨日新增：{payload.get('new', 0)} 件，昨日办结：{payload.get('closed', 0)} 件",
    )
    return Message(title=HEADLINES["daily_summary"], lines=lines, link=f"{base}/#/tickets")


def duration_zh(seconds: float) -> str:
    """A duration as the UI writes it: 45秒, 2分15秒, 1小时5分."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}小时{minutes}分"
    return f"{minutes}分{secs}秒" if minutes else f"{secs}秒"


def _camera(payload: dict[str, Any], *, base: str, tz: ZoneInfo) -> Message:
    """A camera went offline (``event`` camera.offline) or came back (camera.online): name, place, times."""
    event = str(payload.get("event", "camera.offline"))
    name = str(payload.get("camera") or f"#{payload.get('camera_id')}")
    lines = [f"摄像头：{name}"]
    if payload.get("place"):
        lines.append(f"地点：{payload['place']}")
    lines.append(f"离线时间：{local_time(payload.get('offline_since'), tz)}")
    if event == "camera.online":
        lines.append(f"恢复时间：{local_time(payload.get('at'), tz)}")
        lines.append(f"离线时长：{duration_zh(float(payload.get('duration_s') or 0))}")
    else:
        lines.append(f"已离线：{duration_zh(float(payload.get('duration_s') or 0))}，请检查摄像头供电、网络或取流地址")
    return Message(
        title=f"{HEADLINES.get(event, event)}：{name}",
        lines=tuple(lines),
        link=f"{base}/#/live/{payload.get('camera_id')}",
    )
