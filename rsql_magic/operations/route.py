"""Where an operation's requests go, and how: :class:`Route`, opened once per operation.

Every operation used to open its way to the model itself: the cell's replay settings, the
proxy client (a missing proxy deferred while answers may come from the replay file), and the
check that the model asked for is one the admin allows, before anything is collected or sent.
:func:`open_route` is that set-up, once; :meth:`Route.chat` sends one request along it through
the session's request flow (the request's origin, the 429 / 503 policy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rsql_magic.client import ChatResult, ProxyClient
from rsql_magic.replay import Replay
from rsql_magic.session import Session
from rsql_magic.session.notebook import Origin

__all__ = ["Route", "open_route"]


@dataclass(frozen=True)
class Route:
    """The way an operation's requests reach the model.

    ``client``: the proxy; ``batch``: a batch run (429s waited out, failures raise);
    ``replay``: the replay settings of the cell the requests come from (None: off);
    ``origin``: the notebook and cell, taken on the main thread for requests a worker thread
    makes (None: taken at each request); ``settles_replay``: the replay file is settled after a
    SQL question (the attempt that worked stands for the first request, as a %%sql_ai cell
    wants; rsql-eval replays every attempt as it was recorded).
    """

    client: ProxyClient
    batch: bool = False
    replay: Replay | None = None
    origin: Origin | None = None
    settles_replay: bool = False

    def chat(
        self, session: Session, messages: list[dict[str, Any]], *, client_kind: str, **kw: Any
    ) -> ChatResult:
        """One request along this route (``kw``: :meth:`ProxyClient.chat`'s options)."""
        if self.replay is not None:
            kw["replay"] = self.replay
        return session.chat(
            self.client,
            messages,
            client_kind=client_kind,
            batch=self.batch,
            origin=self.origin,
            **kw,
        )


def open_route(
    session: Session,
    *,
    kind: str,
    question: str,
    cell: str,
    models: Sequence[str | None],
    option: bool,
    replayed: bool = True,
    client: ProxyClient | None = None,
) -> Route:
    """The route for one operation of a cell or the chat panel.

    With `replayed`, the replay settings for `cell` (kind ``ask`` or ``sql``; off unless
    ``RSQLMagic.replay`` says otherwise); the proxy client (`client` when given), whose
    absence, with replay on, only matters once a request really needs it; then each of
    `models` checked against those ``GET me`` says this user may use now, unless every
    answer comes from the replay file: a model the admin does not allow fails here, before
    anything is collected or sent (`option`: the models came from ``--model``). Raises
    ProxyError (no proxy) and UsageError (a model not allowed).
    """
    config = session.config
    batch = config.is_batch()
    replay = config.replay(kind, question, cell) if replayed else None
    if client is None:
        client = config.replay_client(replay)
    elif replay is not None and client.token:
        replay.secrets = (client.token,)
    if replay is None or replay.mode != "only":
        config.check_models(client, models, option=option)
    return Route(client, batch, replay, settles_replay=kind == "sql" and replay is not None)
