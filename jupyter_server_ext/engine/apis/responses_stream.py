"""The Responses API's stream, from a chat-completions stream: its typed events in their order
(``response.created``, ``response.in_progress``, ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ... ``.done``,
``response.function_call_arguments.delta`` ... ``.done``, ``response.content_part.done``,
``response.output_item.done``, then ``response.completed``, ``response.incomplete`` or
``response.failed``), each with its ``sequence_number``, as OpenAI's streaming reference lists
them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from .responses import call_item, namespaced, new_id, shell, status_of, usage_of


def event(kind: str, payload: dict[str, Any]) -> bytes:
    return (
        f"event: {kind}\ndata: ".encode() + json.dumps({"type": kind, **payload}).encode() + b"\n\n"
    )


@dataclass
class _Call:
    index: int  # output index
    item: dict[str, Any]
    arguments: str = ""


@dataclass
class StreamTranslator:
    """Chat-completion chunks in, the Responses API's events out (``feed``, then ``close``).
    ``response`` is the Response object as it stands (whole once ``done``)."""

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
    _finish: Any = None
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

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        """Events for one chat chunk (a JSON object); an ``error`` chunk fails the response."""
        if "error" in chunk and not chunk.get("choices"):
            return self.fail(chunk["error"])
        out: list[bytes] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue  # Responses has one answer
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("refusal")
            if isinstance(text, str) and text:
                out += self._text_delta(text)
            for frag in delta.get("tool_calls") or []:
                out += self._call_delta(frag)
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
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

    def _call_delta(self, frag: dict[str, Any]) -> list[bytes]:
        if not isinstance(frag, dict):
            return []
        idx = frag.get("index", 0)
        fn = frag.get("function") or {}
        call = self._calls.get(idx)
        out = []
        if call is None:
            item = call_item(
                str(fn.get("name") or ""),
                str(frag.get("id") or new_id("call")),
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
        err = error if isinstance(error, dict) else {"message": str(error)}
        self.response.update(
            status="failed",
            error={
                "code": str(err.get("code") or "server_error"),
                "message": str(err.get("message") or "the answer broke off"),
            },
            usage=usage_of(self._usage) if self._usage else None,
        )
        self.done = True
        return [self._ev("response.failed", {"response": self.response})]
