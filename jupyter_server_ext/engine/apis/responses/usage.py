"""What a Response, or its ``response.completed`` event, says it used, in the chat form the
engine settles (``bodies.usage``), and the hosted tools' calls its output items show: the reader
of a Responses request sent as it was (``apis.native``)."""

from __future__ import annotations

from typing import Any

from ...bodies.usage import count

# a Responses output item of a hosted tool's call -> its kind
CALL_ITEMS = {
    "web_search_call": "web_search",
    "file_search_call": "file_search",
    "code_interpreter_call": "code_interpreter",
    "image_generation_call": "image_generation",
    "mcp_call": "mcp",
    "computer_call": "computer_use",
    "local_shell_call": "shell",
    "shell_call": "shell",
    "apply_patch_call": "apply_patch",
}


def calls_in_output(output: Any) -> dict[str, int]:
    """The hosted tools' calls a Response's ``output`` items say were made, by kind; a code
    interpreter's by its containers, which are what the provider bills (a container's calls
    are free within its session): the distinct ``container_id``s, one for calls naming none."""
    calls: dict[str, int] = {}
    containers: set[Any] = set()
    for item in output if isinstance(output, list) else []:
        kind = CALL_ITEMS.get(str(item.get("type"))) if isinstance(item, dict) else None
        if kind == "code_interpreter":
            cid = item.get("container_id")
            containers.add(cid if isinstance(cid, str) else None)
        elif kind is not None:
            calls[kind] = calls.get(kind, 0) + 1
    if containers:
        calls["code_interpreter"] = len(containers)
    return calls


class ResponsesUsage:
    """A Response's usage (``input_tokens``, ``output_tokens``, cached input) and its output
    items' hosted calls (``UsageReading``)."""

    def __init__(self) -> None:
        self.calls: dict[str, int] | None = None

    def wants(self, ev: bytes) -> bool:
        return b'"usage"' in ev  # the calls are read from the same event's output items

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        response = obj.get("response") if "response" in obj else obj
        usage = response.get("usage") if isinstance(response, dict) else None
        if not isinstance(usage, dict):
            return None
        details = usage.get("input_tokens_details")
        prompt, completion = count(usage.get("input_tokens")), count(usage.get("output_tokens"))
        if prompt is None or completion is None:
            return None
        cached = count(details.get("cached_tokens")) if isinstance(details, dict) else 0
        self.calls = calls_in_output(response.get("output") if isinstance(response, dict) else None)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "prompt_tokens_details": {"cached_tokens": min(cached or 0, prompt)},
        }
