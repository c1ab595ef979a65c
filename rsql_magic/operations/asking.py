"""Asking: a question with the notebook's live context, answered by the model.

What ``%%ask`` and the chat panel's Send do: one :class:`AskRequest` handed to
:class:`AskOperation`, which opens the route once (:func:`~.route.open_route`: the cell's
replay, the client, the model check before anything is collected or sent), builds the context
request (:meth:`Session.context_request <rsql_magic.session.Session.context_request>`, under
the admin's and the user's context policy) and sends the messages with ``RSQLMagic``'s
sampling. Showing the answer is the caller's: the cell's display or the panel's widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.session import ContextRequest, Session

from .route import Route, open_route

__all__ = ["AskOperation", "AskRequest", "ContextChoice", "context_request"]


@dataclass(frozen=True)
class ContextChoice:
    """What context a question takes along (:meth:`Session.context_request`'s choices).

    ``frames``: frames to include (None: those named in the question, else the most recent;
    none of them when ``named_frames_only``); ``include_r``: the R session; ``sql``: a
    ``(label, connection)`` whose schema goes along, or what ``--sql`` names (resolved by
    :meth:`Session.sql_source` when the context is built: after the route, so a missing proxy
    is said first); ``lang``: the language code is asked in;
    ``no_data``: schemas only; ``references``: fill in ``{var}`` references; ``recent_error``:
    the previous cell's error goes along (else only for a question about an error).
    """

    frames: tuple[str, ...] | None = None
    include_r: bool = False
    sql: tuple[str, Any] | str | None = None
    lang: str = "python"
    no_data: bool = False
    named_frames_only: bool = False
    references: bool = True
    recent_error: bool = True


def context_request(
    session: Session, question: str, client: ProxyClient | None, choice: ContextChoice
) -> ContextRequest:
    """The messages for `question` with the context `choice` names, under `client`'s policy."""
    sql = session.sql_source(choice.sql) if isinstance(choice.sql, str) else choice.sql
    return session.context_request(
        question,
        client,
        frames=None if choice.frames is None else list(choice.frames),
        include_r=choice.include_r,
        sql=sql,
        lang=choice.lang,
        no_data=choice.no_data,
        named_frames_only=choice.named_frames_only,
        references=choice.references,
        recent_error=choice.recent_error,
    )


@dataclass(frozen=True)
class AskRequest:
    """One question to ask.

    ``context``: what goes along with it. ``model``: the cell's ``--model`` or the panel's own
    (None: the settings' choice, :meth:`SessionConfig.model`). ``client_kind``: ``magic``
    (%%ask) or ``chat`` (the panel). ``cell``: the cell's label, the replay file's key;
    ``replayed``: the answer may come from the replay file (not for the panel, nor for an
    agent turn, whose requests depend on what its tools found). ``preview``: nothing is sent
    (``--show-context``): no model check, a missing proxy is no error. ``stream``: the answer
    streams; ``no_cache``: past the proxy's answer cache. ``client``: the proxy to ask (None:
    the session's). ``in_worker``: the answer is asked for from a worker thread: where the
    request comes from is taken now, on the main thread.
    """

    question: str
    context: ContextChoice = field(default_factory=ContextChoice)
    model: str | None = None
    client_kind: str = "magic"
    cell: str = ""
    replayed: bool = True
    preview: bool = False
    stream: bool = False
    no_cache: bool = False
    client: ProxyClient | None = None
    in_worker: bool = False


class AskOperation:
    """One question (see the module docstring). Made on the main thread: the route is opened
    here, so a missing proxy (ProxyError) or a model the admin does not allow (UsageError)
    fails the question before anything is collected or sent."""

    def __init__(self, session: Session, request: AskRequest) -> None:
        self.session, self.request = session, request
        self.model = session.config.model(request.model)
        self.route = self._open()

    def _open(self) -> Route:
        request, session = self.request, self.session
        if request.preview:  # nothing leaves: the proxy only says what its redaction would do
            return Route(request.client or session.config.preview_client())
        route = open_route(
            session,
            kind="ask",
            question=request.question,
            cell=request.cell,
            models=[self.model],
            option=bool(request.model),
            replayed=request.replayed,
            client=request.client,
        )
        return replace(route, origin=session.cells.origin()) if request.in_worker else route

    def context(self) -> ContextRequest:
        """The messages with the live context (main thread: R and frames are read here)."""
        built = context_request(
            self.session, self.request.question, self.route.client, self.request.context
        )
        if self.route.replay is not None:  # the replay file keeps the question as sent
            self.route.replay.question = built.question
        return built

    def send(self, messages: list[dict[str, Any]], **hooks: Any) -> ChatResult:
        """Ask for the answer to `messages` (``hooks``: streaming, retry and connection hooks
        of :meth:`ProxyClient.chat`), with ``RSQLMagic``'s sampling. Raises ProxyError."""
        request, ask = self.request, self.session.config.ask
        return self.route.chat(
            self.session,
            messages,
            client_kind=request.client_kind,
            model=self.model,
            stream=request.stream,
            no_cache=request.no_cache,
            temperature=ask.temperature,
            max_tokens=ask.max_tokens,
            **hooks,
        )
