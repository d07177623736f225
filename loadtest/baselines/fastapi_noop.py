"""Baseline: FastAPI endpoints that validate ChatEvent-shaped pydantic models and return dicts
(`/check` one event, `/check/batch` a list).

What a "textbook" FastAPI `/check` costs before any classification (measured here: ~4.5k req/s per
worker here). Served with the same uvicorn settings as Redline by `loadtest/http_bench.py`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import FastAPI
from pydantic import BaseModel


class Chat(BaseModel):
    id: str
    kind: Literal["group", "direct"] = "group"
    members: int | None = None


class Sender(BaseModel):
    id: str = ""
    roles: list[str] = []


class Payment(BaseModel):
    amount: float
    direction: Literal["send", "receive"]
    currency: str = "CNY"


class Media(BaseModel):
    pdq: list[str] = []
    sha256: str | None = None


class File(BaseModel):
    name: str
    size: int | None = None


class Link(BaseModel):
    url: str


class Forward(BaseModel):
    origin_id: str | None = None
    shares: int = 0
    views: int = 0


class ChatEvent(BaseModel):
    id: str | None = None
    type: Literal["text", "image", "video", "red_packet", "transfer", "file", "link"] = "text"
    chat: Chat | None = None
    sender: Sender | None = None
    sent_at: datetime | None = None
    text: str = ""
    payment: Payment | None = None
    media: Media | None = None
    file: File | None = None
    link: Link | None = None
    forward: Forward | None = None


app = FastAPI()


@app.post("/check")
async def check(event: ChatEvent) -> dict[str, object]:
    return {"event_id": event.id, "action": "allow", "severity": "none", "matches": []}


@app.post("/check/batch")
async def check_batch(events: list[ChatEvent]) -> list[dict[str, object]]:
    return [{"event_id": e.id, "action": "allow", "severity": "none", "matches": []} for e in events]
