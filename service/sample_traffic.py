"""Realistic sample group-chat traffic for `redline dev`, the stream tests and the load tests.

Seedable (`random.Random`): the same seed gives the same records. About `malformed_ratio` of the
records are deliberately broken (not JSON, wrong types, missing id) so that the dead-letter path
shows. Texts mix everyday chatter with what the default pack is about and its known traps.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import msgspec

_EVERYDAY: Final = (
    "大家好，明天上午九点在三楼会议室开会，请准时参加。",
    "收到",
    "好的，我下午把材料发群里。",
    "请各位在周五前提交本月工作总结。",
    "辛苦了！",
    "今天的值班表已更新，请查看。",
    "下午停电检修，请提前保存文件。",
    "有人知道食堂今天几点开门吗？",
    "明天降温，大家注意保暖。",
    "谢谢大家的支持 👍",
    "Meeting moved to 3pm, same room.",
    "Can someone share the slides from this morning?",
    "Thanks, got it.",
    "Reminder: timesheets are due Friday.",
    "保密培训通知：周三下午两点，全体人员参加。",
    "不信谣、不传谣，以官方通报为准。",
    "村委会换届选举公告：本月十五日在村委会投票。",
)
_RISKY: Final = (
    "听说下周要全面封城了，赶紧去超市囤货！",
    "内部消息：明天开始工资停发，大家快转告。",
    "这份是机密文件，看完别外传。",
    "代购日本化妆品，正品保证，私聊下单，价格优惠。",
    "微商招代理，零成本创业，月入过万，有意者加我。",
    "你就是个废物，什么都干不好。",
    "这个新政策简直是瞎折腾，完全不顾老百姓死活。",
    "选举的时候投我一票，红包已经发了。",
    "Selling designer bags, DM me for prices, cash on delivery.",
    "Don't tell anyone, but the internal audit report says we are finished.",
)
_PACKET_NOTES: Final = (
    "恭喜发财，大吉大利", "新年快乐！", "新婚快乐，百年好合", "辛苦了，一点心意", "投票的事拜托了",
    "生日快乐", "谢谢帮忙", "", "小小意思，请笑纳",
)
_FILES: Final = (
    "2024年工作总结.docx", "会议纪要.pdf", "值班安排表.xlsx", "机密-人事调整方案.pdf",
    "内部资料_项目预算.xlsx", "培训课件.pptx", "quarterly-report.pdf", "绝密文件扫描件.jpg",
    "photos.zip", "通知.doc",
)
_LINKS: Final = (
    "https://www.gov.cn/zhengce/content/notice.html",
    "https://news.example.com/2024/local-weather",
    "https://weidian.com/?userid=1234567",
    "https://item.taobao.com/item.htm?id=6543210987",
    "https://shop.example.com/item/42?ref=group",
    "https://mp.weixin.qq.com/s/AbCdEfGhIjKl",
    "https://docs.example.org/handbook",
)
_MALFORMED: Final = (
    b"not json at all {",
    b'{"id": 12345, "type": "text"}',
    b'{"type": "text", "text": "no id here"}',
    b'{"id": "broken-1", "type": "red_packet", "payment": {"amount": "lots", "direction": "send"}}',
    b'{"id": "broken-2", "type": "teleport"}',
    b'{"id": "broken-3", "text": "truncated',
    b"",
)
_TYPES: Final = ("text", "red_packet", "transfer", "file", "link", "image", "video", "forward")
_TYPE_WEIGHTS: Final = (64, 7, 3, 6, 7, 6, 2, 5)

_encoder: Final = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class SampleRecord:
    key: bytes
    value: bytes
    event_id: str | None  # None for a deliberately malformed record


class SampleTraffic:
    def __init__(self, seed: int = 0, *, chats: int = 40, malformed_ratio: float = 0.03,
                 id_prefix: str = "evt") -> None:
        self._rng = random.Random(seed)
        self._malformed_ratio = malformed_ratio
        self._prefix = f"{id_prefix}-{seed}"
        self._count = 0
        rng = self._rng
        self._chats = [(f"group-{1000 + i}", rng.choice((8, 25, 60, 150, 480))) for i in range(chats)]
        self._officials = [f"u-off-{i}" for i in range(30)]
        self._members = [f"u-mem-{i}" for i in range(200)]

    def event(self, now: datetime | None = None) -> dict[str, object]:
        """One valid ChatEvent as a JSON-ready dict."""
        rng = self._rng
        self._count += 1
        chat_id, members = rng.choice(self._chats)
        official = rng.random() < 0.35
        sender = {"id": rng.choice(self._officials if official else self._members),
                  "roles": ["official"] if official else ["member"]}
        sent_at = (now or datetime.now(UTC)).isoformat()
        kind = rng.choices(_TYPES, _TYPE_WEIGHTS)[0]
        event: dict[str, object] = {
            "id": f"{self._prefix}-{self._count}", "type": kind, "sent_at": sent_at,
            "chat": {"id": chat_id, "kind": "group", "members": members}, "sender": sender,
        }
        if kind in ("text", "forward"):
            event["type"] = "text"
            event["text"] = rng.choice(_RISKY) if rng.random() < 0.12 else rng.choice(_EVERYDAY)
            if kind == "forward":
                viral = rng.random() < 0.3
                event["forward"] = {"origin_id": f"msg-{rng.randrange(10**6)}",
                                    "shares": rng.randrange(500, 3000) if viral else rng.randrange(0, 50),
                                    "views": rng.randrange(5000, 200000) if viral else rng.randrange(0, 800)}
        elif kind in ("red_packet", "transfer"):
            amount = round(rng.choice((rng.uniform(0.01, 20), rng.uniform(20, 500), rng.uniform(500, 5000))), 2)
            event["payment"] = {"amount": amount, "currency": "CNY",
                                "direction": rng.choice(("send", "receive"))}
            event["text"] = rng.choice(_PACKET_NOTES)
        elif kind == "file":
            event["file"] = {"name": rng.choice(_FILES), "size": rng.randrange(10_000, 20_000_000)}
        elif kind == "link":
            event["link"] = {"url": rng.choice(_LINKS)}
            event["text"] = rng.choice(("看看这个", "", "Check this out", "新品上架，欢迎选购"))
        else:  # image / video: perceptual hashes, one per frame for video
            frames = 1 if kind == "image" else rng.randrange(2, 6)
            event["media"] = {"pdq": [f"{rng.getrandbits(256):064x}" for _ in range(frames)]}
            event["text"] = rng.choice(("", "", "现场照片", "look at this"))
        return event

    def record(self, now: datetime | None = None) -> SampleRecord:
        """One Kafka record (key = chat id); about `malformed_ratio` of them are broken."""
        if self._rng.random() < self._malformed_ratio:
            self._count += 1
            return SampleRecord(key=b"malformed", value=self._rng.choice(_MALFORMED), event_id=None)
        event = self.event(now)
        chat = event["chat"]
        assert isinstance(chat, dict)
        return SampleRecord(key=str(chat["id"]).encode(), value=_encoder.encode(event), event_id=str(event["id"]))

    def records(self, count: int, now: datetime | None = None) -> list[SampleRecord]:
        return [self.record(now) for _ in range(count)]
