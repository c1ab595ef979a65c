"""Asking: a question with the notebook's live context, answered by the model.

What ``%%ask`` and the chat panel's Send do: one :class:`AskRequest` handed to
:class:`AskOperation`, which opens the route once (:func:`~rsql_magic.session.open_route`: the cell's
replay, the client, the model check before anything is collected or sent), builds the context
request (:meth:`Session.context_request <rsql_magic.session.Session.context_request>`, under
the admin's and the user's context policy) and sends the messages with ``RSQLMagic``'s
sampling. Showing the answer is the caller's: the cell's display or the panel's widgets.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.context.named import NOTHING_SENT, named_connection, named_frames
from rsql_magic.context.rsession import r_data_frames
from rsql_magic.errors import UsageError
from rsql_magic.session import ContextRequest, Route, Session, open_route

__all__ = [
    "AskOperation",
    "AskRequest",
    "ContextChoice",
    "context_request",
    "named_context",
    "unreadable_message",
]


@dataclass(frozen=True)
class ContextChoice:
    """What context a question takes along (:meth:`Session.context_request`'s choices).

    ``frames``: frames to include, by name (None: those named in the question, else the most
    recent; none of them when ``named_frames_only``); a name may be an R data frame (then
    ``r_frames`` once looked up, :func:`named_context`). ``include_r``: the R session;
    ``r_named``: the user asked for it (``--r``, the panel's box), not a default or ``--lang r``,
    so a session that cannot be read stops the question. ``sql``: a ``(label, connection)``
    whose schema goes along, or what ``--sql`` names (looked up by :func:`named_context`);
    ``lang``: the language code is asked in; ``no_data``: schemas only; ``references``: fill
    in ``{var}`` references; ``recent_error``: the previous cell's error goes along (else only
    for a question about an error).
    """

    frames: tuple[str, ...] | None = None
    include_r: bool = False
    r_named: bool = False
    r_frames: tuple[str, ...] = ()
    sql: tuple[str, Any] | str | None = None
    lang: str = "python"
    no_data: bool = False
    named_frames_only: bool = False
    references: bool = True
    recent_error: bool = True


def named_context(session: Session, choice: ContextChoice) -> ContextChoice:
    """`choice` with each source it names looked up (issue 77): ``--df``'s frames (the
    namespace's, or R's data frames when an R session runs) and ``--sql``'s connection.
    UsageError, before any request, for a name that resolves to nothing: it says the names
    there are, and the one meant when one is close."""
    ns = session.shell.user_ns
    sql = named_connection("--sql", choice.sql, ns) if isinstance(choice.sql, str) else choice.sql
    if choice.frames is None:
        return replace(choice, sql=sql)
    found = named_frames("--df", choice.frames, ns, r_data_frames())
    return replace(
        choice,
        sql=sql,
        frames=found.python,
        r_frames=found.r,
        include_r=choice.include_r or bool(found.r),
    )


def context_request(
    session: Session, question: str, client: ProxyClient | None, choice: ContextChoice
) -> ContextRequest:
    """The messages for `question` with the context `choice` names, under `client`'s policy
    (its names looked up by :func:`named_context` first, or here for ``--sql``'s: a name that
    resolves to nothing raises UsageError); a source that resolves and cannot be read is in
    the request's ``unreadable``."""
    sql = choice.sql
    if isinstance(sql, str):
        sql = named_connection("--sql", sql, session.shell.user_ns)
    return session.context_request(
        question,
        client,
        frames=None if choice.frames is None else list(choice.frames),
        include_r=choice.include_r,
        r_named=choice.r_named,
        r_frames=list(choice.r_frames),
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
    """One question (see the module docstring). Made on the main thread: what the context
    names is looked up first (a name that resolves to nothing is a UsageError, before any
    request), then the route is opened, so a missing proxy (ProxyError) or a model the admin
    does not allow (UsageError) fails the question before anything is collected or sent."""

    def __init__(self, session: Session, request: AskRequest) -> None:
        self.session = session
        self.request = replace(request, context=named_context(session, request.context))
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
        """The messages with the live context (main thread: R and frames are read here).
        UsageError when a source the user named could not be read: nothing is sent."""
        built = context_request(
            self.session, self.request.question, self.route.client, self.request.context
        )
        if built.unreadable:
            raise UsageError(unreadable_message(built.unreadable))
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


def unreadable_message(unreadable: list[str]) -> str:
    """What stops a question whose named context could not be read."""
    return f"{'; '.join(u.rstrip('. ') for u in unreadable)}. {NOTHING_SENT}"
