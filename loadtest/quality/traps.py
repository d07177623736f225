"""Benign messages the default pack must never block (the conduct code's false-positive traps: docs/quality.md).

Each trap is a complete event plus the strongest action it may receive; the harness exits
non-zero when any trap gets more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loadtest.quality.scoring import CLOCK
from service.engine.classifier import Engine
from service.events import ACTION_RANK, Action, Verdict, event_from_object


@dataclass(frozen=True, slots=True)
class Trap:
    label: str
    event: dict[str, Any]
    worst: Action = "allow"  # the strongest action this trap may receive


def _text(text: str) -> dict[str, Any]:
    return {"text": text}


def _gift(text: str, amount: float, kind: str = "red_packet") -> dict[str, Any]:
    return {
        "type": kind, "text": text, "chat": {"id": "g", "kind": "group", "members": 40},
        "sender": {"id": "m1", "roles": ["member"]},
        "payment": {"amount": amount, "currency": "CNY", "direction": "send"},
    }


TRAPS: tuple[Trap, ...] = (
    # Ordinary cash gifts between members (the match stays in the audit trail, lowered to allow).
    Trap("wedding gift between members", _gift("小王新婚快乐！百年好合", 200)),
    Trap("new-year red packet between members", _gift("新年快乐，恭喜发财，大吉大利", 66)),
    Trap("spring-festival greeting red packet", _gift("过年好！给大家拜年了", 8.88)),
    Trap("wedding gift by transfer", _gift("随个份子，祝新婚快乐", 500, "transfer")),
    # Training notices that merely mention secrecy.
    Trap("secrecy training notice", _text("下午三点在三楼会议室开展保密培训，请各科室准时参加")),
    Trap("secrecy training with marking names", _text("保密教育：文件密级分为绝密、机密、秘密三级，请大家掌握")),
    Trap("secrecy training slides", _text("保密培训课件（内部资料）已上传，请自学")),
    Trap("ordinary secret", _text("告诉你们一个秘密，下周食堂有火锅")),
    Trap("phone password", _text("手机密码忘了怎么办")),
    # Announcements of legitimate elections.
    Trap("election announcement", _text("明天上午九点村委会换届选举，请大家准时到村部投票")),
    Trap("election discipline notice", _text("换届纪律：严禁拉票贿选，发现给钱拉票的请向纪委举报")),
    Trap("candidate list published", _text("候选人名单已公示，请大家认真行使选举权和被选举权")),
    Trap("vote-count reminder", _text("请各位代表投赞成票、反对票或弃权票，以本人意愿为准")),
    # People warning against rumours.
    Trap("rumour warning slogan", _text("不信谣不传谣，一切以官方通报为准")),
    Trap("rumour debunk", _text("网传明天全市停水，经核实是谣言，请勿转发")),
    Trap("wise people stop rumours", _text("谣言止于智者，大家别再转了")),
    Trap("english rumour warning", _text("This is a rumour, don't forward it")),
    Trap("chain message debunked", _text("群里那条紧急扩散的消息是假消息，大家不要转发")),
    Trap("viral debunk", {"text": "网传某地出现不明病毒，经核实纯属谣言，请勿转发",
                          "forward": {"origin_id": "x", "shares": 9000, "views": 90000}}),
    # Ordinary work talk that shares words with the lexicons.
    Trap("garbage sorting rule", _text("垃圾分类新规下月实施，请大家熟悉")),
    Trap("anti-formalism campaign", _text("坚决整治形式主义、官僚主义，为基层减负")),
    Trap("ordinary shopping", _text("我在淘宝上买了个打印机，挺好用")),
    Trap("dinner split", _text("周六聚餐每人50元，私聊我转账")),
    Trap("love charity", _text("这个活动叫做爱心义卖，欢迎参加")),
    Trap("medical talk", _text("乳腺癌和宫颈癌筛查下周在社区医院进行")),
    Trap("crime news", _text("公安机关依法打击卖淫嫖娼违法犯罪")),
    Trap("anti-bias speech", _text("叫人乡巴佬是歧视性称呼，请大家注意")),
    Trap("waste recycling", _text("废物利用，变废为宝")),
)


def check_traps(engine: Engine) -> list[tuple[Trap, Verdict]]:
    """Every trap with its verdict; the caller fails on those whose action exceeds `worst`."""
    results = []
    for i, trap in enumerate(TRAPS):
        fields = {"id": f"trap:{i}", "chat": {"id": "trap"}, **trap.event}
        results.append((trap, engine.classify(event_from_object(fields), CLOCK)))
    return results


def violations(results: list[tuple[Trap, Verdict]]) -> list[tuple[Trap, Verdict]]:
    return [(t, v) for t, v in results if ACTION_RANK[v.action] > ACTION_RANK[t.worst]]
