"""What one cell's chat calls do with the replay file, by mode (off, auto, only, refresh):
:class:`Replay` looks a request up before it is sent, records the answer after, and settles a
``%%sql_ai`` cell's attempts; :func:`resolve_mode` says which mode is in effect.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from rsql_common.model_names import same_model

from ..client import ChatResult
from ..errors import ReplayMissing, RSQLWarning, UsageError
from .matching import content_text, describe_difference, fingerprint, request_parts
from .store import Entry, ReplayStore

__all__ = ["MODES", "Replay", "resolve_mode", "short_text"]

MODES = ("off", "auto", "only", "refresh")


def resolve_mode(configured: str | None, batch: bool) -> str:
    """The mode in effect: ``configured`` (a trait), else ``$RSQL_REPLAY``, else by run kind."""
    for value, where in (
        (configured, "RSQLMagic.replay"),
        (os.environ.get("RSQL_REPLAY"), "RSQL_REPLAY"),
    ):
        v = (value or "").strip().lower()
        if v:
            if v not in MODES:
                raise UsageError(f"{where}={value!r}: expected one of {', '.join(MODES)}")
            return v
    return "auto" if batch else "off"


def _now() -> str:
    return (
        _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


_URL_CREDENTIALS = re.compile(r"(\w+://)[^/\s:@]+:[^/\s@]+@")


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for s in secrets:
        if s and len(s) >= 6:
            text = text.replace(s, "[redacted]")
    return _URL_CREDENTIALS.sub(r"\1[redacted]@", text)


@dataclass
class Replay:
    """What one cell's chat calls do with the store. Passed to ``ProxyClient.chat``."""

    mode: str
    store: ReplayStore
    kind: str = "ask"
    cell: str = ""
    question: str = ""
    secrets: tuple[str, ...] = ()  # the proxy token: never written, even if echoed back
    # fingerprints this kernel recorded itself: "auto" replays answers from earlier runs only,
    # so a question asked twice in one run still goes to the proxy (and its cache) both times
    recorded_here: set[str] | None = None

    # fingerprints this cell's calls looked up or recorded, in order (see ``settle``)
    asked: list[str] = field(default_factory=list)

    def lookup(self, body: dict[str, Any], model: str | None = None) -> ChatResult | None:
        """The recorded answer (``auto`` / ``only``), None to ask; ``only`` raises if none.

        ``model``: what the proxy would answer with now (the model asked for, or the user's
        default from ``GET me``); None when unknown (no proxy: the recorded answer stands)."""
        if self.mode not in ("auto", "only"):
            return None
        fp = fingerprint(body)
        self.asked.append(fp)
        if self.mode == "auto" and self.recorded_here is not None and fp in self.recorded_here:
            return None
        entry = self.store.get(fp)
        if entry is not None and entry.failed:
            if self.mode == "only":
                raise ReplayMissing(
                    f"replay only (RSQL_REPLAY=only): the answer recorded for "
                    f"{self.cell or 'this cell'} ({entry.recorded}) failed ({entry.failed}), "
                    f"and a failed answer is never replayed." + _HOW_TO_RECORD
                )
            return None  # auto: ask again
        if entry is not None and self.mode == "auto" and self._outdated(entry, model):
            return None
        if entry is not None:
            return entry.result()
        if self.mode == "only":
            raise ReplayMissing(self.explain_missing(body))
        return None

    def _outdated(self, entry: Entry, model: str | None) -> bool:
        """Whether the proxy would no longer answer as recorded (``auto``): it says so."""
        why = ""
        if entry.fallback:
            why = f"it was the proxy's fallback answer ({entry.fallback})"
        elif model and entry.model and not same_model(entry.model, model):
            why = f"it came from {entry.model!r}, and the proxy now answers with {model!r}"
        if why:
            warnings.warn(
                f"replay: the answer recorded for {self.cell or 'this cell'} on "
                f"{entry.recorded} is not replayed: {why}. Asked again; the new answer is "
                f"recorded in {self.store.path}",
                RSQLWarning,
                stacklevel=4,
            )
        return bool(why)

    def record(self, body: dict[str, Any], res: ChatResult) -> None:
        if self.mode not in ("auto", "refresh"):
            return
        fp = fingerprint(body)
        if not self.asked or self.asked[-1] != fp:
            self.asked.append(fp)
        if self.recorded_here is not None:
            if self.mode == "auto" and fp in self.recorded_here:
                return  # recorded once in this run: the first answer stays the recorded one
            self.recorded_here.add(fp)
        secrets = self.secrets
        self.store.append(
            Entry(
                fp=fp,
                recorded=_now(),
                text=_scrub(res.text, secrets),
                model=_scrub(res.model or "", secrets),
                usage={
                    k: v
                    for k, v in (res.usage or {}).items()
                    if isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                },
                cost_usd=res.cost_usd,
                kind=self.kind,
                cell=_scrub(self.cell, secrets)[:200],
                question=_scrub(self.question, secrets)[:500],
                model_requested=str(body.get("model") or ""),
                parts=request_parts(body),
                upstream=_scrub(res.upstream or "", secrets)[:100],
                fallback=_scrub(res.fallback or "", secrets)[:100],
            )
        )

    def settle(self, worked: bool, why: str = "") -> None:
        """After a %%sql_ai cell: every attempt but the one that worked is marked failed, and
        the answer that worked is recorded for the cell's first request (same model), so a
        rerun replays it at once; when none worked, every attempt is marked failed (`why`)."""
        if self.mode not in ("auto", "refresh") or not self.asked:
            return
        latest = self.store.latest()
        asked = list(dict.fromkeys(self.asked))
        good = latest.get(self.asked[-1]) if worked else None
        first = latest.get(asked[0])
        failed = asked if good is None else [fp for fp in asked if fp != good.fp]
        if good is not None and first is not None and first.fp != good.fp:
            if same_model(good.model, first.model):
                self.store.append(
                    replace(
                        first,
                        recorded=_now(),
                        text=good.text,
                        model=good.model,
                        usage=dict(good.usage),
                        cost_usd=good.cost_usd,
                        upstream=good.upstream,
                        fallback=good.fallback,
                        failed="",
                    )
                )
                failed.remove(first.fp)
        for fp in failed:
            e = latest.get(fp)
            if e is not None and not e.failed:
                reason = short_text(why, 200) if why else "a later attempt was needed"
                self.store.append(replace(e, recorded=_now(), failed=reason or "failed"))
        self.asked.clear()

    def explain_missing(self, body: dict[str, Any]) -> str:
        where = self.cell or "this cell"
        head = (
            f"replay only (RSQL_REPLAY=only): no recorded answer for {where}"
            + (f", question {short_text(self.question)!r}" if self.question else "")
            + f" in {self.store.path}."
        )
        entries = list(self.store.latest().values())
        same = [e for e in entries if e.kind == self.kind and e.question == self.question[:500]]
        if not same:
            tail = (
                f" Nothing is recorded for this question ({len(entries)} entries in the file)."
                if entries
                else " The file has no entries."
            )
            return head + tail + _HOW_TO_RECORD
        want = request_parts(body)
        best = max(same, key=lambda e: sum(want.get(k) == h for k, h in e.parts.items()))
        diff = describe_difference(want, best.parts) or ["the request (no single part differs)"]
        if best.model_requested != str(body.get("model") or ""):
            diff.insert(
                0,
                f"model: recorded {best.model_requested or '(proxy default)'!r}, "
                f"now {body.get('model') or '(proxy default)'!r}",
            )
            diff = [d for d in diff if d != "changed: model"]
        msgs = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        if len(msgs) > 2 and msgs[-1].get("role") == "user":
            # a follow-up (a %%sql_ai retry): what was fed back says why it was asked
            first = content_text(msgs[-1].get("content")).strip().split("\n")[0]
            diff.append(f"this request is a retry, after: {short_text(first, 120)}")
        return (
            head + f" The closest entry (recorded {best.recorded}, {best.cell or 'cell ?'}) "
            "differs in:\n  - " + "\n  - ".join(diff) + _HOW_TO_RECORD
        )


_HOW_TO_RECORD = (
    "\nRecord it where the proxy is reachable with RSQL_REPLAY=auto (or refresh), then rerun."
)


def short_text(text: str, n: int = 80) -> str:
    """`text` on one line (runs of blanks as one space), cut to `n` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"
