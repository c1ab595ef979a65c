"""``rsql-proxy --workers N``: N forked processes serving one port, and the parent that watches them.

Each worker binds its own listening socket with SO_REUSEPORT, so the kernel spreads new
connections evenly over the workers (one shared accept queue would wake them all and leave most
connections to whichever is least busy at that instant). Workers fork before any event loop,
thread or connection exists; each builds its own engine. Limits hold across workers only
through the shared state (Redis), which the service checks before it gets here.

The parent only supervises: it forwards SIGTERM / SIGINT to every worker (each drains its own
connections), exits once all have, and restarts a worker that dies unexpectedly, a bounded
number of times.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable

# documented for leaving a forked child without running the parent's cleanup (os._exit)
from os import _exit as leave_child

from tornado import netutil

from .engine.errors import CannotListen
from .engine.monitoring.metrics import enable_multiprocess

log = logging.getLogger("rsql")

# a worker slot restarted this many times within RESTART_WINDOW seconds is crashing on start:
# the supervisor gives up (stops the others, exits 1) rather than fork for ever
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
_PR_SET_PDEATHSIG = 1
CONFIG_ERROR = 2  # a worker's exit code for a configuration it refused: restarting cannot help
_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


def bind_reuseport(port: int, address: str) -> list[socket.socket]:
    """This process's own listening sockets on (address, port), sharing the port with the others."""
    return listen(port, address, reuse_port=True)


def listen(
    port: int, address: str, *, reuse_port: bool = False, hint: str = ""
) -> list[socket.socket]:
    """Listening sockets on (address, port), or CannotListen saying why in one line and what to
    do (`hint`: where the port was chosen, when not on the command line)."""
    try:
        return netutil.bind_sockets(port, address, reuse_port=reuse_port)
    except OSError as exc:
        raise CannotListen(port_problem(port, address, exc, hint)) from None


def port_problem(port: int, address: str, exc: OSError, hint: str = "") -> str:
    """Why (address, port) cannot be listened on, and what to do, in one line."""
    where = f"{address or '*'}:{port}"
    fix = hint or "start with --port N (another port) or stop what listens there"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot listen on {where}: the port is in use (an rsql-proxy still running, or "
            f"another program: `ss -ltnp 'sport = :{port}'` names it); {fix}"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot listen on {where}: this user may not take port {port} (ports below 1024 "
            "need privileges); use a port from 1024, or a reverse proxy in front"
        )
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (
            f"cannot listen on {where}: {address!r} is no address of this machine; use --ip "
            "127.0.0.1, 0.0.0.0 (every interface) or one of its own addresses"
        )
    return f"cannot listen on {where}: {exc.strerror or exc}; {fix}"


def check_port(port: int, address: str, hint: str = "") -> str | None:
    """Why the workers could not serve (address, port), or None. Asked in the parent, so the
    reason is said once: the OS's when the port is taken by a process without SO_REUSEPORT or
    of another user; and a listener of our own user (an rsql-proxy still running) would share
    the port with SO_REUSEPORT unnoticed, so anything answering a connection counts too."""
    host = "127.0.0.1" if address in ("", "0.0.0.0") else "::1" if address == "::" else address
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return port_problem(port, address, OSError(errno.EADDRINUSE, "in use"), hint)
    except OSError:
        pass
    try:
        for sock in netutil.bind_sockets(port, address, reuse_port=True):
            sock.close()
    except OSError as exc:
        return port_problem(port, address, exc, hint)
    return None


def _die_with_parent() -> None:
    # a supervisor killed with SIGKILL cannot forward anything: let the kernel tell the worker
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the worker outlives a killed parent
        pass


class Supervisor:
    """Forks `n` workers running ``serve(index)`` (which returns an exit code) and watches them."""

    def __init__(self, n: int, serve: Callable[[int], int]) -> None:
        self.n = n
        self.serve = serve
        self.pids: dict[int, int] = {}  # pid -> worker index
        self.restarts: dict[int, list[float]] = {i: [] for i in range(n)}
        self.stopping = False
        self.failed = 0  # the exit code when not 0
        self.parent = os.getpid()
        self.metrics_dir = ""

    def run(self) -> int:
        # one empty folder per run: counters of an earlier run must not be summed in
        self.metrics_dir = tempfile.mkdtemp(prefix="rsql-metrics-")
        enable_multiprocess(self.metrics_dir)
        for sig in _STOP_SIGNALS:
            signal.signal(sig, self._forward)
        try:
            for i in range(self.n):
                self._spawn(i)
            log.info(
                "supervisor %d: %d workers started (pids %s)",
                self.parent,
                self.n,
                ", ".join(map(str, self.pids)),
            )
            return self._watch()
        finally:
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _spawn(self, index: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        # no signal may run the supervisor's handler inside a worker that has just forked
        signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the supervisor's code
            code = 1
            try:
                for sig in _STOP_SIGNALS:
                    signal.signal(sig, signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
                _die_with_parent()
                if os.getppid() != self.parent:  # the parent died before prctl took effect
                    leave_child(1)
                code = self.serve(index)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except BaseException:
                log.exception("worker %d crashed", os.getpid())
            finally:
                logging.shutdown()
                leave_child(code)
        self.pids[pid] = index
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)

    def _forward(self, signum: int, frame: object) -> None:
        if not self.stopping:
            log.info(
                "supervisor %d: %s, stopping %d workers",
                self.parent,
                signal.Signals(signum).name,
                len(self.pids),
            )
        self.stopping = True
        for pid in list(self.pids):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def _watch(self) -> int:
        while self.pids:
            try:
                pid, status = os.waitpid(-1, 0)
            except ChildProcessError:
                break
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            how = f"exit code {code}" if code >= 0 else f"signal {signal.Signals(-code).name}"
            if code == CONFIG_ERROR and not self.stopping:
                log.error(
                    "supervisor %d: worker %d refused the configuration (see above); stopping",
                    self.parent,
                    pid,
                )
                self.failed = CONFIG_ERROR
                self._forward(signal.SIGTERM, None)
                continue
            if self.stopping:
                log.log(
                    logging.INFO if code == 0 else logging.WARNING,
                    "supervisor %d: worker %d stopped (%s)",
                    self.parent,
                    pid,
                    how,
                )
                self.failed = self.failed or int(code != 0)
                continue
            self._restart(index, pid, how)
        if self.failed:
            return self.failed
        log.info("supervisor %d: all workers stopped", self.parent)
        return 0

    def _restart(self, index: int, pid: int, how: str) -> None:
        now = time.monotonic()
        recent = [t for t in self.restarts[index] if now - t < RESTART_WINDOW]
        if len(recent) >= MAX_RESTARTS:
            log.error(
                "supervisor %d: worker %d died (%s); worker slot %d was restarted %d times in %.0f s, "
                "giving up: stopping the other workers (see the errors above)",
                self.parent,
                pid,
                how,
                index,
                len(recent),
                RESTART_WINDOW,
            )
            self.failed = 1
            self._forward(signal.SIGTERM, None)
            return
        recent.append(now)
        self.restarts[index] = recent
        self._spawn(index)
        new = next(p for p, i in self.pids.items() if i == index)
        log.warning(
            "supervisor %d: worker %d died unexpectedly (%s); started worker %d in its place "
            "(restart %d of at most %d per %.0f s)",
            self.parent,
            pid,
            how,
            new,
            len(recent),
            MAX_RESTARTS,
            RESTART_WINDOW,
        )
