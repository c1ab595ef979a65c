"""What upstreams serve and whether self-hosted servers are up, from their ``GET /models``.

Self-hosted OpenAI-compatible servers (vLLM, Ollama, llama.cpp's server, TGI) are upstreams
with ``max_in_flight``; their capacity is concurrency, which the pool caps (``Key.full``). A
cheap probe, at start and on every health check: an answer lists the server's models (when
the admin did not name them) and puts a server taken out by a failed probe back; no answer
takes it out of rotation until one comes, so requests go to its replicas meanwhile instead of
each waiting for a connection to fail.

A hosted upstream whose models the admin did not name is asked the same way, for its models
only: it serves none until it has answered (``UpstreamSpec.discover``), never every name.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from .pool import Key, Pool
from .transport.remote import HTTPTransport

log = logging.getLogger("rsql.engine")

PROBE_TIMEOUT = 3.0
DOWN = "health probe failed"


async def probe(pool: Pool, http: HTTPTransport, keys: Iterable[Key] | None = None) -> None:
    """Probe every self-hosted upstream of `pool`, and every hosted one whose models are not
    named, at once, through `http` (``HTTPTransport``)."""
    servers = [
        k
        for k in (pool.keys if keys is None else keys)
        if k.spec.max_in_flight or (k.spec.discovers and not k.spec.local)
    ]
    if servers:
        await asyncio.gather(*(_probe_one(pool, http, key) for key in servers))


async def _probe_one(pool: Pool, http: HTTPTransport, key: Key) -> None:
    spec = key.spec
    status, models = await http.list_models(spec, PROBE_TIMEOUT)
    if status == 200:
        if spec.discovers and models and set(models) != spec.discovered:
            spec.discovered.clear()
            spec.discovered.update(models)
            log.info("upstream %s serves %s", spec.name, ", ".join(models[:20]))
    if not spec.max_in_flight:  # a hosted upstream: asked for its models only
        if status in (401, 403) and not key.disabled:  # a bad key, found before a user's request
            await pool.disable(key, f"HTTP {status} from provider")
        if status != 200 and spec.discovers and not spec.discovered:
            log.warning(
                "upstream %s: its models could not be read (%s); it serves none until they are "
                "(name them in its 'models' to serve them without asking)",
                spec.name,
                "no answer" if status == 0 else f"HTTP {status}",
            )
        return
    if status == 200:
        if key.disabled.startswith(DOWN):
            await pool.enable(key)
            log.info("upstream %s answers its health probe again", spec.name)
    elif status in (401, 403):
        if not key.disabled:
            await pool.disable(key, f"HTTP {status} from provider")
    elif not key.disabled:
        await pool.disable(key, f"{DOWN} ({'no answer' if status == 0 else f'HTTP {status}'})")
        log.warning("upstream %s: %s; out of rotation until it answers", spec.name, key.disabled)
