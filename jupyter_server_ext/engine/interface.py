"""The engine's interface with its hosts: who calls (``Caller``), what the engine replies
(``Reply``), and what became of a request (``Outcome``, with a logged course's ``Transcript``),
which the usage log, metrics and course log read."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from rsql_common.stages import CHECK_STAGES

# the stages at which %%sql_ai's SQL can fail and move to the chain's next model (the kernel's
# own vocabulary); a header naming anything else is ignored, so the usage log holds only these
ESCALATION_STAGES = CHECK_STAGES


@dataclass(frozen=True)
class Caller:
    """Who is asking: a stable user name, their groups and admin flag, and the client kind."""

    user: str
    groups: tuple[str, ...] = ()
    admin: bool = False
    client: str = "api"  # magic | chat | sql | agent | inline (set by {proxy}inline only) | api


@dataclass
class Reply:
    """What the host writes back: a JSON body, or SSE events to stream."""

    status: int
    headers: dict[str, str]
    body: bytes = b""
    events: AsyncGenerator[bytes, None] | None = None  # closed by whoever stops reading early
    model: str = ""  # the model that answers (the one asked for, or the fallback's)
    # `body` decoded, as the engine read it (a provider's JSON answer, its cost written in, the
    # caller's redacted values mapped back), so an edge that turns it into its API's shape reads
    # it without decoding the bytes again; None where the engine did not read it (a cache hit)
    # or it was no JSON. Writing a new `body` forgets it (`__setattr__`), so it is never stale:
    # a writer that has the new body's object sets it after the bytes.
    answer: Any = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "body":
            object.__setattr__(self, "answer", None)
        object.__setattr__(self, name, value)


@dataclass(slots=True)
class Transcript:
    """What the course log keeps of one request of a student of a logged course
    (``engine.courses``): the prompt as the provider got it, after redaction, and the answer's
    text as the provider sent it, each within its bound (``courses.transcript``)."""

    courses: tuple[str, ...]  # the logged courses (hub groups) the student is in
    prompt: list[dict[str, str]] = field(default_factory=list)  # {"role", "text"} each
    prompt_cut: int = 0  # characters of the prompt not kept
    # each choice's text, in the pieces it came in (a request that asks for several, `n` or a
    # batch of prompts, has one each; every other API, choice 0)
    answer: dict[int, list[str]] = field(default_factory=dict)
    # tool calls, by (choice, the call's index): [name, arguments]
    calls: dict[tuple[int, int], list[str]] = field(default_factory=dict)
    answer_chars: int = 0  # kept so far, text and calls
    answer_cut: int = 0  # characters of the answer past its bound, not kept


@dataclass
class Outcome:
    """What happened to one request; the usage log and metrics read it."""

    request_id: str
    caller: Caller
    model: str
    started: float  # wall clock
    upstream: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    status: int = 200
    error: str | None = None
    limit: str | None = None  # the limit that refused it, for 429s we sent
    cache_hit: bool = False
    latency_s: float = 0.0
    upstream_s: float = 0.0  # time spent waiting on upstreams; latency minus this is our overhead
    attempts: list[str] = field(default_factory=list)
    messages: list[Any] | None = None
    redactions: dict[str, int] | None = None  # placeholders put in per type (never the values)
    fallback: str | None = None  # the upstream that answered in place of the requested model's
    # %%sql_ai's escalation chain asked this model because the previous one's SQL failed at this
    # stage (X-RSQL-Escalation); one of ESCALATION_STAGES, never the client's own text
    escalation: str | None = None
    # where it was asked: the notebook (as Engine.notebook_id names it) and the cell id
    notebook: str | None = None
    cell: str | None = None
    notebook_path: str | None = None  # the notebook's own path, for the course log
    # a student's of a logged course: what they asked and were answered (``engine.courses``)
    transcript: Transcript | None = None
    # the API the request came by: chat, completions, embeddings, responses, messages
    api: str = "chat"
    # an MCP tool call's rows returned (run_sql); None for everything else
    result_rows: int | None = None
    # the provider's prompt cache: prompt tokens read from it and written to it, and what the
    # request would have cost at the input price throughout (``Price.uncached``)
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    uncached_usd: float = 0.0
    # of the prompt and of the completion, the tokens that were sound, charged at the audio
    # rates (``replies.audio_counts``)
    audio_input_tokens: int = 0
    audio_output_tokens: int = 0
    trace: Any = field(default=None, repr=False, compare=False)  # its spans, when tracing is on
