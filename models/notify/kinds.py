"""What a person can be told, the channels that carry it, and which kinds are urgent."""

from __future__ import annotations

from typing import Literal, get_args

Kind = Literal["assigned", "escalated", "overdue", "reopened", "linkage", "daily_summary", "camera_offline"]
KINDS: tuple[str, ...] = get_args(Kind)
#: the name of each kind on the settings page and in the messages
KIND_NAMES: dict[str, str] = {
    "assigned": "新工单派给我",
    "escalated": "工单升级给我",
    "overdue": "工单超时",
    "reopened": "工单重新打开",
    "linkage": "联动请求（协办）",
    "daily_summary": "每日汇总",
    "camera_offline": "摄像头离线与恢复在线",
    "test": "测试消息",
}
#: sent during quiet hours too unless the user turns that off: a late ticket must reach someone now
URGENT_KINDS = frozenset({"escalated", "overdue"})

ChannelKind = Literal["wecom", "dingtalk", "email", "sms"]
CHANNEL_KINDS: tuple[str, ...] = get_args(ChannelKind)
CHANNEL_NAMES: dict[str, str] = {
    "wecom": "企业微信群机器人",
    "dingtalk": "钉钉群机器人",
    "email": "电子邮件",
    "sms": "短信",
}

#: delivery states: waiting, held for the end of quiet hours, sent, given up on
DeliveryState = Literal["pending", "held", "sent", "failed"]
DELIVERY_STATES: tuple[str, ...] = get_args(DeliveryState)
