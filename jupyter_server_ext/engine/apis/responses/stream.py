"""The Responses API's stream, from a chat-completions stream: its typed events in their order
(``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ... ``.done``,
``response.function_call_arguments.delta`` ... ``.done``, ``response.content_part.done``,
``response.output_item.done``, then ``response.completed``, ``response.incomplete`` or
``response.failed``), each with its ``sequence_number``, as OpenAI's streaming reference lists
them."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ...bodies import json_codec
from ..chat import CallIds, call_index, chunk_parts, first_text, obj
from .answer import call_item, shell, status_of, usage_of
from .request import namespaced, new_id

UNREADABLE = "the upstream's answer could not be read"


def event(kind: str, payload: dict[str, Any]) -> bytes:
    """One typed event. Written by orjson: the response object that three events repeat echoes
    the request's ``instructions`` (up to a million characters), which the standard library
    wrote escaped to six bytes a character: 0.2 s of the event loop and 18 MB for one request."""
    return f"event: {kind}\ndata: ".encode() + json_codec.dumps({"type": kind, **payload}) + b"\n\n"


@dataclass
class _Call:
    index: int  # output index
    item: dict[str, Any]
    arguments: str = ""


@dataclass
class StreamTranslator:
    """Chat-completion chunks in, the Responses API's events out (``feed``, then ``close``).
    ``response`` is the Response object as it stands (whole once ``done``). A chunk's field of
    another type than the chat API's is skipped; a chunk nobody foresaw fails the response
    (``response.failed``), never an exception that would cut the stream off."""

    request: dict[str, Any]
    response_id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    seq: int = 0
    response: dict[str, Any] = field(init=False)
    done: bool = False
    _text_index: int | None = None
    _text: str = ""
    _text_item: dict[str, Any] | None = None
    _calls: dict[int, _Call] = field(default_factory=dict)
    _ids: CallIds = field(default_factory=lambda: CallIds("call"))
    _finish: str | None = None
    _usage: Any = None

    def __post_init__(self) -> None:
        self.response = shell(self.request, self.response_id, self.model, self.created)

    def _ev(self, kind: str, payload: dict[str, Any]) -> bytes:
        out = event(kind, {**payload, "sequence_number": self.seq})
        self.seq += 1
        return out

    def start(self) -> list[bytes]:
        snapshot = dict(self.response)
        return [
            self._ev("response.created", {"response": snapshot}),
            self._ev("response.in_progress", {"response": snapshot}),
        ]

    def feed(self, chunk: Any) -> list[bytes]:
        """Events for one chat chunk (a JSON object); an ``error`` chunk fails the response."""
        if self.done:
            return []
        try:
            return self._feed(obj(chunk))
        except Exception:  # the second wall: a shape nobody foresaw fails the response cleanly
            return self.fail({"message": UNREADABLE})

    def _feed(self, chunk: dict[str, Any]) -> list[bytes]:
        read = chunk_parts(chunk)  # Responses has one answer: choice 0's
        if read.error is not None:
            return self.fail(read.error)
        out: list[bytes] = []
        if read.usage:
            self._usage = read.usage
        for kind, value in read.parts:
            if kind == "text":
                out += self._text_delta(value)
            elif kind == "call":
                out += self._call_delta(value)
            else:
                self._finish = value
        return out

    def _text_delta(self, text: str) -> list[bytes]:
        out = []
        if self._text_item is None:
            self._text_index = len(self.response["output"])
            self._text_item = {
                "type": "message",
                "id": new_id("msg"),
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            }
            self.response["output"].append(self._text_item)
            where = {"output_index": self._text_index}
            out.append(
                self._ev("response.output_item.added", {**where, "item": dict(self._text_item)})
            )
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(
                self._ev(
                    "response.content_part.added",
                    {**where, "item_id": self._text_item["id"], "content_index": 0, "part": part},
                )
            )
        self._text += text
        out.append(
            self._ev(
                "response.output_text.delta",
                {
                    "item_id": self._text_item["id"],
                    "output_index": self._text_index,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                },
            )
        )
        return out

    def _call_delta(self, frag: Any) -> list[bytes]:
        idx = call_index(frag) if isinstance(frag, dict) else None
        if idx is None:
            return []  # a fragment that cannot be placed
        fn = obj(frag.get("function"))
        call = self._calls.get(idx)
        out = []
        if call is None:
            item = call_item(
                first_text(fn.get("name")),
                self._ids(frag.get("id")),
                "",
                namespaced(self.request.get("tools")),
            )
            item["status"] = "in_progress"
            call = self._calls[idx] = _Call(len(self.response["output"]), item)
            self.response["output"].append(item)
            out.append(
                self._ev(
                    "response.output_item.added", {"output_index": call.index, "item": dict(item)}
                )
            )
        piece = fn.get("arguments")
        if isinstance(piece, str) and piece:
            call.arguments += piece
            out.append(
                self._ev(
                    "response.function_call_arguments.delta",
                    {"item_id": call.item["id"], "output_index": call.index, "delta": piece},
                )
            )
        return out

    def close(self) -> list[bytes]:
        """The events that end a stream whose chat chunks are all in."""
        if self.done:
            return []
        try:
            return self._close()
        except Exception:  # the second wall, as in feed
            return self.fail({"message": UNREADABLE})

    def _close(self) -> list[bytes]:
        out: list[bytes] = []
        status, incomplete = status_of(self._finish)
        if self._text_item is not None:
            where = {"item_id": self._text_item["id"], "output_index": self._text_index}
            part = {"type": "output_text", "text": self._text, "annotations": [], "logprobs": []}
            out.append(
                self._ev(
                    "response.output_text.done",
                    {**where, "content_index": 0, "text": self._text, "logprobs": []},
                )
            )
            out.append(
                self._ev("response.content_part.done", {**where, "content_index": 0, "part": part})
            )
            self._text_item.update(status=status, content=[part])
            out.append(
                self._ev(
                    "response.output_item.done",
                    {"output_index": self._text_index, "item": dict(self._text_item)},
                )
            )
        for call in self._calls.values():
            call.item.update(arguments=call.arguments, status="completed")
            out.append(
                self._ev(
                    "response.function_call_arguments.done",
                    {
                        "item_id": call.item["id"],
                        "output_index": call.index,
                        "name": call.item["name"],
                        "arguments": call.arguments,
                    },
                )
            )
            out.append(
                self._ev(
                    "response.output_item.done",
                    {"output_index": call.index, "item": dict(call.item)},
                )
            )
        self.response.update(
            status=status, incomplete_details=incomplete, usage=usage_of(self._usage)
        )
        kind = "response.completed" if status == "completed" else "response.incomplete"
        out.append(self._ev(kind, {"response": self.response}))
        self.done = True
        return out

    def fail(self, error: Any) -> list[bytes]:
        """The stream broke off: the response failed, saying why."""
        if self.done:
            return []
        err = error if isinstance(error, dict) else {"message": error}
        self.response.update(
            status="failed",
            error={
                "code": first_text(err.get("code")) or "server_error",
                "message": str(err.get("message") or "the answer broke off")[:1000],
            },
            usage=usage_of(self._usage) if self._usage else None,
        )
        self.done = True
        return [self._ev("response.failed", {"response": self.response})]
