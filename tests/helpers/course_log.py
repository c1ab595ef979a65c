"""The course log's tests, end to end and in-process: the hub users of two logged courses, a
request on each API as a client sends it, and the text a client reads of each answer (read here
on its own, not with the proxy's reader, so the log is held to what clients really got)."""

from __future__ import annotations

import json
from typing import Any

# the logged courses: stat101 read by its staff for 120 days, bio200 by its own for 30
COURSE_LOGS = {
    "stat101": {"instructors": "stat101-staff", "retention_days": 120},
    "bio200": {"instructors": "bio200-staff", "retention_days": 30},
}
# token -> hub user (tokens of 16 characters or more: a shorter one is warned of)
STATIC_USERS = {
    "tok-ann-0123456789ab": {"name": "ann", "groups": ["stat101"]},
    "tok-ben-0123456789ab": {"name": "ben", "groups": ["stat101", "bio200"]},
    "tok-cat-0123456789ab": {"name": "cat", "groups": ["bio200"]},
    "tok-dan-0123456789ab": {"name": "dan", "groups": ["chem"]},
    "tok-prof-0123456789a": {"name": "prof", "groups": ["stat101-staff"]},
    "tok-bioprof-0123456a": {"name": "bioprof", "groups": ["bio200-staff"]},
    "tok-admin-0123456789": {"name": "root", "groups": [], "admin": True},
    # a user named like the instructors' group, in the students' group: a student still
    "tok-mallory-01234567": {"name": "stat101-staff", "groups": ["stat101"]},
}
TOKEN = {u["name"]: t for t, u in STATIC_USERS.items()}

# each API: (path, model, body of a question)
APIS: dict[str, tuple[str, str]] = {
    "chat": ("v1/chat/completions", "fake-small"),
    "completions": ("v1/completions", "fake-small"),
    "responses": ("v1/responses", "fake-small"),  # translated into a chat request
    "responses-native": ("v1/responses", "fake-native"),  # sent as it came
    "messages": ("v1/messages", "fake-small"),  # translated
    "messages-native": ("v1/messages", "claude-small"),  # to an Anthropic upstream
}


def question(api: str, text: str, stream: bool) -> tuple[str, dict[str, Any]]:
    """The path and body a client of `api` sends to ask `text`."""
    path, model = APIS[api]
    body: dict[str, Any] = {"model": model, "stream": stream}
    if api == "completions":
        body.update(prompt=text, max_tokens=50)
    elif api.startswith("responses"):
        body.update(input=text, max_output_tokens=50)
    elif api.startswith("messages"):
        body.update(max_tokens=50, messages=[{"role": "user", "content": text}])
    else:
        body.update(messages=[{"role": "user", "content": text}], max_tokens=50)
    return path, body


def client_text(api: str, raw: bytes, stream: bool) -> str:
    """The answer's text as a client of `api` reads it."""
    if not stream:
        obj = json.loads(raw)
        if api == "completions":
            return str(obj["choices"][0]["text"])
        if api.startswith("responses"):
            return "".join(
                part["text"]
                for item in obj["output"]
                if item.get("type") == "message"
                for part in item["content"]
                if part.get("type") == "output_text"
            )
        if api.startswith("messages"):
            return "".join(b["text"] for b in obj["content"] if b.get("type") == "text")
        return str(obj["choices"][0]["message"]["content"])
    out = []
    for block in raw.decode().split("\n\n"):
        data = next((ln[5:].strip() for ln in block.splitlines() if ln.startswith("data:")), "")
        if not data.startswith("{"):
            continue
        ev = json.loads(data)
        if api.startswith("responses"):
            if ev.get("type") == "response.output_text.delta":
                out.append(ev["delta"])
        elif api.startswith("messages"):
            if ev.get("type") == "content_block_delta" and "text" in ev["delta"]:
                out.append(ev["delta"]["text"])
        else:
            for choice in ev.get("choices") or ():
                said = (
                    choice.get("delta", {}).get("content")
                    if "delta" in choice
                    else choice.get("text")
                )
                out.append(said or "")
    return "".join(out)
