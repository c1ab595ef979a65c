"""%%ask, %ask and %ask_status.

``%%ask [options]`` + a question in the cell body (or ``%ask [options] question`` on one line)
gathers live context (DataFrames, the R session, a database schema, the last error), sends it
to the rsql proxy and renders the answer. Configure with ``%config RSQLMagic.<name> = ...`` or
``c.RSQLMagic.<name>`` in ``ipython_config.py``.

Batch runs. ``set_next_input`` is dropped by nbclient (so by nbconvert and papermill), and
nobody is there to read a rate-limit message. A run counts as batch when
``RSQLMagic.batch`` says so ("yes"/"no"), else when env ``RSQL_BATCH`` is set (1/0), else
when the kernel's current execute request has ``allow_stdin=False``: nbclient sends that
(``kc.allow_stdin = False``), while JupyterLab, Notebook 7, VS Code and jupyter console send
``allow_stdin=True``. A plain terminal IPython (no kernel) is interactive. In batch runs
answers are not streamed, ``--insert`` shows the code in the output, 429 / 503 answers are
waited out per ``Retry-After`` (bounded by ``batch_retries`` and ``batch_max_wait``), and
every final failure raises, so ``jupyter nbconvert --execute`` fails.

Replay (:mod:`rsql_magic.replay`): ``RSQLMagic.replay`` / ``RSQL_REPLAY`` (off, auto, only,
refresh; auto in batch runs, off otherwise) answers %%ask and %%sql_ai from a JSON-lines file of
recorded answers, so a rerun shows the same answers without a proxy or quota.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
import time
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Dict, Enum, Float, Int, Unicode

from . import render
from .client import ChatResult, ProxyClient, ProxyError
from .context import build_context
from .context.frames import describe_frame, find_frames, frame_kind
from .context.history import ErrorRecord, fill_references, format_exception, index_list
from .privacy import ContextPolicy, context_report, effective_policy, preview
from .prompt import build_messages
from .replay import Replay, ReplayStore, resolve_mode, resolve_path
from .sanitize import plain_text

__all__ = ["RSQLMagic", "load_ipython_extension", "unload_ipython_extension"]

# Options that take a value: used to split "%ask --df x what is ..." into options + question.
_VALUE_OPTS = {"--df", "--sql", "--model", "--lang", "-o", "--out"}
_FLAG_OPTS = {"--r", "--no-data", "--insert", "--no-cache", "--show-context"}
_ERROR_WORDS = re.compile(
    r"\b(error|errors|fail|fails|failed|failing|exception|traceback|wrong|broken|crash\w*|"
    r"bug|why does|why do|doesn'?t work|not work\w*)\b",
    re.I,
)


def split_options(text: str) -> tuple[str, str]:
    """Split leading ``--options`` from free text: ``("--df a -o x", "what is ...")``.

    The question is kept verbatim (quotes, apostrophes, braces): only the options part goes
    through argparse, so "what's wrong" never meets a shell-style quote parser.
    """
    pos = 0
    n = len(text)
    opts_end = 0
    expect_value = False
    while pos < n:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n:
            break
        end = pos
        while end < n and not text[end].isspace():
            end += 1
        tok = text[pos:end]
        if expect_value:
            expect_value = False
            opts_end = end
        elif tok in _FLAG_OPTS or any(tok.startswith(o + "=") for o in _VALUE_OPTS):
            opts_end = end
        elif tok in _VALUE_OPTS:
            expect_value = True
            opts_end = end
        else:
            break
        pos = end
    return text[:opts_end].strip(), text[opts_end:].strip()


@magics_class
class RSQLMagic(Magics):
    """The %%ask family. Every trait is configurable as ``RSQLMagic.<name>``."""

    proxy_url = Unicode(
        None, allow_none=True, help="Proxy root URL; overrides RSQL_PROXY_URL and discovery."
    ).tag(config=True)
    proxy_token = Unicode(
        None, allow_none=True, help="Token for proxy_url (else RSQL_PROXY_TOKEN / JUPYTERHUB_API_TOKEN)."
    ).tag(config=True)
    model = Unicode(
        None,
        allow_none=True,
        help="Default model (else env RSQL_MODEL, else the proxy's default; --model overrides).",
    ).tag(config=True)
    context_tokens = Int(3000, help="Token budget (chars/4) for all context together.").tag(config=True)
    max_frames = Int(3, help="Frames included when none are named (the most recently defined).").tag(
        config=True
    )
    head_rows = Int(5, help="Sample rows shown per frame (0 = none).").tag(config=True)
    stats_sample = Int(
        10_000, help="Frames longer than this get column stats from a random sample of this size."
    ).tag(config=True)
    max_tokens = Int(None, allow_none=True, help="max_tokens for answers (None: proxy default).").tag(
        config=True
    )
    temperature = Float(
        0.0,
        allow_none=True,
        help="Sampling temperature. 0 (default): the same question on the same data gets the "
        "same answer, and the proxy may answer it from its cache. None: the model's default.",
    ).tag(config=True)
    timeout = Float(120.0, help="Seconds to wait for one proxy call.").tag(config=True)
    stream = Bool(True, help="Stream answers into the output in interactive kernels.").tag(config=True)
    render_mode = Enum(
        ["markdown", "html", "text"],
        "markdown",
        help="markdown: text/markdown + text/plain; html: rendered here with pygments; text.",
    ).tag(config=True)
    batch = Enum(
        ["auto", "yes", "no"],
        "auto",
        help="Batch-run behaviour (no streaming, --insert into output, wait on 429, raise): "
        "auto-detected from allow_stdin / RSQL_BATCH unless set.",
    ).tag(config=True)
    batch_retries = Int(3, help="Batch runs: retries after 429/503 with Retry-After.").tag(config=True)
    batch_max_wait = Float(
        300.0, help="Batch runs: most seconds to wait in total on Retry-After before failing."
    ).tag(config=True)
    replay = Unicode(
        None,
        allow_none=True,
        help="Replay store for answers: off, auto (replay if recorded, else ask and record), "
        "only (never call the proxy; a missing answer fails the cell), refresh (ask again and "
        "record). Unset: env RSQL_REPLAY, else auto in batch runs and off interactively.",
    ).tag(config=True)
    context_policy = Dict(
        default_value={},
        help="Your own context policy, e.g. {'sample_rows': False, 'value_stats': False, "
        "'redact_columns': ['*email*', 'student_id']}. It is merged with the admin's policy "
        "from the proxy (GET me): the stricter setting wins, so it can only withhold more. "
        "With the in-process engine (no proxy, no admin) it is the whole policy.",
    ).tag(config=True)
    replay_file = Unicode(
        None,
        allow_none=True,
        help="Replay file (JSON lines). Unset: env RSQL_REPLAY_FILE, else .rsql-replay.jsonl "
        "in the kernel's working directory (the notebook's folder under nbconvert/papermill).",
    ).tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell=shell, **kwargs)
        self.errors: list[ErrorRecord] = []  # failed cells since load (``{Err[-1]}``)
        self._frame_ids: dict[str, int] = {}
        self._recent: list[str] = []  # frame names, most recently (re)bound first
        self.last_result: ChatResult | None = None
        self.last_messages: list[dict] | None = None
        self._recorded_here: set[str] = set()  # replay fingerprints this kernel recorded
        self._ref_policy: ContextPolicy | None = None  # the policy {var} references obey
        self.last_policy: ContextPolicy | None = None

    # -- hooks ---------------------------------------------------------------------------

    def post_run_cell(self, result: Any) -> None:
        """Track recently (re)defined frames and failed cells. Cheap: one pass, type checks."""
        try:
            ns = self.shell.user_ns
            for name, obj in find_frames(ns).items():
                oid = id(obj)
                if self._frame_ids.get(name) != oid:
                    self._frame_ids[name] = oid
                    if name in self._recent:
                        self._recent.remove(name)
                    self._recent.insert(0, name)
            for gone in [n for n in self._frame_ids if n not in ns]:
                self._frame_ids.pop(gone, None)
                if gone in self._recent:
                    self._recent.remove(gone)
            err = result.error_in_exec or result.error_before_exec
            if err is not None:
                src = getattr(result.info, "raw_cell", "") or ""
                if not src.lstrip().startswith(("%%ask", "%ask")):  # our own failures: not context
                    self.errors.append(
                        ErrorRecord(
                            getattr(result, "execution_count", None),
                            src,
                            format_exception(err),
                            type(err).__name__,
                        )
                    )
                    del self.errors[:-20]
        except Exception:  # a hook must never break the user's cell
            pass

    # -- helpers -------------------------------------------------------------------------

    def is_batch(self) -> bool:
        if self.batch != "auto":
            return self.batch == "yes"
        env = os.environ.get("RSQL_BATCH", "").strip().lower()
        if env in ("1", "true", "yes"):
            return True
        if env in ("0", "false", "no"):
            return False
        kernel = getattr(self.shell, "kernel", None)
        if kernel is None:
            return False  # terminal IPython honours set_next_input and has a person watching
        return not bool(getattr(kernel, "_allow_stdin", True))

    def client(self) -> ProxyClient:
        return ProxyClient.discover(self.proxy_url or None, self.proxy_token or None, timeout=self.timeout)

    def policy_for(self, client: ProxyClient | None) -> tuple[ContextPolicy, list[str]]:
        """The context policy in force for ``client``: the admin's (from ``GET me``, cached
        briefly, fail closed when unreadable) merged with ``RSQLMagic.context_policy``."""
        return effective_policy(client, self.context_policy)

    def preview_client(self) -> ProxyClient:
        """The proxy for ``--show-context``: a missing one is no error there, nothing is sent."""
        try:
            return self.client()
        except ProxyError as e:
            return ProxyClient(description="no proxy", unavailable=e)

    def replay_session(self, kind: str, question: str, cell: str) -> Replay | None:
        """The replay settings for one cell's chat calls (None: replay is off)."""
        mode = resolve_mode(self.replay, self.is_batch())
        if mode == "off":
            return None
        return Replay(mode, ReplayStore(resolve_path(self.replay_file)), kind=kind, cell=cell,
                      question=question, recorded_here=self._recorded_here)

    def replay_client(self, rp: Replay | None) -> ProxyClient:
        """The proxy client; with replay on, a failed discovery is deferred to the first call
        that really needs the proxy, so a recorded notebook reruns with no proxy at all."""
        try:
            client = self.client()
        except ProxyError as e:
            if rp is None or rp.mode == "refresh":
                raise
            return ProxyClient(description="no proxy (replay only)", unavailable=e)
        if rp is not None and client.token:
            rp.secrets = (client.token,)
        return client

    def cell_label(self, magic: str, line: str) -> str:
        """How a failing replay names the cell: its In [n] and its magic line."""
        # IPython counts the running cell already: In [n] is execution_count - 1 meanwhile
        n = getattr(self.shell, "execution_count", None)
        n = n - 1 if isinstance(n, int) and n > 1 else n
        src = f"{magic} {line}".strip()[:120]
        return f"cell In [{n}] `{src}`" if n else f"cell `{src}`"

    def _last_error(self) -> ErrorRecord | None:
        if self.errors:
            return self.errors[-1]
        exc = getattr(sys, "last_value", None)  # an error from before %load_ext
        if exc is not None:
            return ErrorRecord(None, "", format_exception(exc), type(exc).__name__)
        return None

    def _resolve_ref(self, name: str, idx: int | None) -> str | None:
        ns = self.shell.user_ns
        if name == "Err" and "Err" not in ns:
            rec = index_list(self.errors, idx)
            return rec.as_text() if rec is not None else None
        if name not in ns:
            return None
        val = ns[name]
        if idx is not None:
            if name == "Out" and isinstance(val, dict):
                if idx < 0:
                    keys = sorted(val)
                    val = val.get(keys[idx]) if -len(keys) <= idx else None
                else:
                    val = val.get(idx)
                if val is None:
                    return None
            else:
                if not isinstance(val, (list, tuple)):
                    return None  # only plain sequences: never call user __getitem__
                val = index_list(val, idx)
                if val is None:
                    return None
        if inspect.ismodule(val) or inspect.isclass(val):
            return None
        if callable(val) and not frame_kind(val):
            try:
                return inspect.getsource(val).rstrip()
            except (OSError, TypeError):
                return None
        pol = self._ref_policy
        if frame_kind(val):
            return "\n" + describe_frame(name, val, budget_chars=2000, policy=pol) + "\n"
        if pol is not None and not pol.is_open and _withhold_ref(name, val, pol):
            return f"<{type(val).__name__} `{name}`: values withheld by the context policy>"
        text = val if isinstance(val, str) else repr(val)
        return text if len(text) <= 4000 else text[:3990] + " …(cut)"

    # -- %%ask ---------------------------------------------------------------------------

    @magic_arguments()
    @argument("--df", default=None, help="Frames to include: NAME[,NAME]. Default: frames named "
              "in the question, else the few most recently defined.")
    @argument("--r", action="store_true", help="Include the R session (rpy2).")
    @argument("--sql", default=None, metavar="CONN", help="Include the schema of connection "
              "variable CONN (sqlite3, DuckDB, SQLAlchemy engine or URL; 'jupysql' or '%%sql' "
              "for JupySQL's current connection).")
    @argument("--no-data", action="store_true", help="Schemas only: no sample rows or values.")
    @argument("--model", default=None, help="Model to ask (default: RSQLMagic.model or the proxy's).")
    @argument("--lang", default=None, choices=["python", "r", "sql"], help="Language for code.")
    @argument("--insert", action="store_true", help="Put the answer's code into a new cell.")
    @argument("-o", "--out", default=None, metavar="VAR", help="Store the answer text in VAR.")
    @argument("--no-cache", action="store_true", help="Bypass the proxy's answer cache.")
    @argument("--show-context", action="store_true", help="Show what would be sent; send nothing.")
    @no_var_expand
    @line_cell_magic
    def ask(self, line: str = "", cell: str | None = None) -> None:
        """Ask about your data and code: %%ask [options] + question, or %ask [options] question."""
        opts, rest = split_options(line)
        if rest.startswith("-"):
            raise UsageError(f"%ask: unknown option {rest.split()[0]!r} (see %ask? for options)")
        args = parse_argstring(self.ask, opts)
        question = "\n".join(p for p in (rest, cell or "") if p.strip()).strip()
        if not question:
            raise UsageError("%%ask needs a question: in the cell body, or after %ask on the line")
        self._ask(args, question, self.cell_label("%%ask" if cell is not None else "%ask", line))

    def _ask(self, args: Any, question: str, cell: str = "") -> None:
        shell = self.shell
        ns = shell.user_ns
        batch = self.is_batch()
        refs_err = re.search(r"\{Err\[-?\d+\]\}", question) is not None
        # the proxy first: its admin's policy decides what every collector (and every {var}
        # reference) may show. With no proxy the cell fails here, as it always did.
        rp = None if args.show_context else self.replay_session("ask", question, cell)
        client = self.preview_client() if args.show_context else self.replay_client(rp)
        policy, pnotes = self.policy_for(client)
        self.last_policy = policy
        self._ref_policy = policy
        try:
            question = fill_references(question, self._resolve_ref)
        finally:
            self._ref_policy = None
        if rp is not None:
            rp.question = question

        frames = [f.strip() for f in args.df.split(",") if f.strip()] if args.df else None
        sql = None
        if args.sql:
            name = args.sql.strip()
            if name in ns:
                sql = (name, ns[name])
            elif name.lower() in ("jupysql", "%sql", "%%sql", "sql"):
                sql = ("JupySQL current connection", None)
            elif "://" in name:
                sql = (name, name)
            else:
                raise ProxyError(0, f"--sql {name}: no such variable (expected a connection "
                                    "variable, a database URL, or 'jupysql')")
        lang = args.lang or ("sql" if sql else "r" if args.r else "python")
        r_loaded = "rpy2.ipython" in getattr(shell.extension_manager, "loaded", set())
        from .context.rsession import r_session_exists

        # R comes along when asked for (--r, --lang r), or by default when the rpy2 extension
        # is loaded and the question did not pick its context explicitly (--df / --sql)
        auto_r = r_loaded and sql is None and frames is None and r_session_exists()
        include_r = bool(args.r or lang == "r" or auto_r)
        # when the question is about R or SQL, add frames only if named (not "the recent ones")
        max_frames = 0 if (args.r or sql) and frames is None else self.max_frames
        last_err = self._last_error()
        use_err = last_err is not None and not refs_err and (
            _ERROR_WORDS.search(question) is not None
            or (last_err.execution_count is not None
                and last_err.execution_count >= (shell.execution_count or 0) - 1)
        )
        ctx = build_context(
            question=question,
            ns=ns,
            frames=frames,
            recent_frames=self._recent,
            include_r=include_r,
            sql=sql,
            last_error=last_err if use_err else None,
            no_data=args.no_data,
            budget_tokens=self.context_tokens,
            max_frames=max_frames,
            head_rows=self.head_rows,
            stats_sample=self.stats_sample,
            policy=policy,
        )
        ctx.notes[:0] = pnotes
        for note in ctx.notes:
            print(f"rsql: {note}", file=sys.stderr)
        messages = build_messages(question, ctx.render(), lang)
        self.last_messages = messages

        if args.show_context:
            self._show_context(messages, ctx, client, policy, args.no_data)
            if args.out:
                ns[args.out] = messages
            return

        model = args.model or self.model or os.environ.get("RSQL_MODEL") or None
        handle = None
        buf: list[str] = []
        stream = bool(self.stream and not batch)
        if stream:
            handle = display(render.mimebundle("", None, mode=self.render_mode, streaming=True),
                             raw=True, display_id=True)
        last_push = [0.0]

        def on_delta(piece: str) -> None:
            buf.append(piece)
            now = time.monotonic()
            if handle is not None and now - last_push[0] > 0.1:  # ~10 updates/s is plenty
                last_push[0] = now
                handle.update(render.mimebundle("".join(buf), None, mode=self.render_mode,
                                                streaming=True), raw=True)

        try:
            res = self._chat_retrying(
                client, messages, batch=batch, model=model, stream=stream,
                on_delta=on_delta if stream else None, no_cache=args.no_cache, buf=buf,
                replay=rp,
            )
        except ProxyError as e:
            if handle is not None:
                handle.update(render.error_bundle("".join(buf), f"rsql: {e}"), raw=True)
            raise
        self.last_result = res
        bundle = render.mimebundle(res.text, res, mode=self.render_mode)
        if handle is not None:
            handle.update(bundle, raw=True)
        else:
            display(bundle, raw=True)
        if args.out:
            ns[args.out] = res.text
        if args.insert:
            self._insert(res.text, lang, batch)

    def _chat_retrying(
        self, client: ProxyClient, messages: list[dict], *, batch: bool, buf: list[str],
        **kw: Any,
    ) -> ChatResult:
        waited = 0.0
        attempt = 0
        while True:
            try:
                return client.chat(
                    messages, client_kind="magic", temperature=self.temperature,
                    max_tokens=self.max_tokens, **kw,
                )
            except ProxyError as e:
                retriable = e.status in (429, 503) and e.retry_after is not None
                if not (batch and retriable) or attempt >= self.batch_retries:
                    raise
                wait = max(0.0, float(e.retry_after or 0))
                if waited + wait > self.batch_max_wait:
                    e.message += (f" (not waiting {wait:g}s more: RSQLMagic.batch_max_wait="
                                  f"{self.batch_max_wait:g}s, already waited {waited:g}s)")
                    raise
                print(f"rsql: {e}; batch run: waiting {wait:g}s and retrying "
                      f"({attempt + 1}/{self.batch_retries})", file=sys.stderr, flush=True)
                time.sleep(wait)
                waited += wait
                attempt += 1
                buf.clear()

    def _show_context(self, messages: list[dict], ctx: Any, client: ProxyClient,
                      policy: ContextPolicy, no_data: bool = False) -> None:
        """What would leave: after the policy and after the proxy's redaction (``POST
        redact``, which the proxy answers itself: no model sees it), and what was withheld."""
        pv = preview(client, messages)
        header = (f"rsql: nothing sent (--show-context) to the model. Context ~{ctx.tokens} "
                  f"tokens of {self.context_tokens}; {ctx.timings() or 'no sections'}")
        text = context_report(messages, ctx, policy, pv, header=header, no_data=no_data)
        # values from frames and databases are in there: plain text only, control chars out
        display({"text/plain": plain_text(text)}, raw=True)

    def _insert(self, text: str, lang: str, batch: bool) -> None:
        blocks = render.extract_code(text, lang)
        if not blocks:
            print("rsql: --insert: the answer has no code block", file=sys.stderr)
            return
        blang, code = blocks[0]
        loaded = getattr(self.shell.extension_manager, "loaded", set())
        if blang in ("r",) and "rpy2.ipython" in loaded:
            code = "%%R\n" + code
        elif blang in ("sql",) and "sql" in loaded:
            code = "%%sql\n" + code
        if batch:
            # nbclient drops set_next_input: show the code where a reader of the output sees it
            md = "**Code for the next cell** (batch run: not inserted):\n\n" + render.code_block(
                code, blang or lang)
            display(render.markdown_bundle(md), raw=True)
        else:
            self.shell.set_next_input(code, replace=False)

    # -- %ask_status ---------------------------------------------------------------------

    def _replay_status(self) -> str:
        try:
            mode = resolve_mode(self.replay, self.is_batch())
        except ProxyError as e:
            return f"**replay**: invalid ({e})"
        if mode == "off":
            return "**replay**: off"
        path = resolve_path(self.replay_file)
        return f"**replay**: {mode} ({len(ReplayStore(path).latest())} answer(s) in {path.name})"

    @line_magic
    def ask_status(self, line: str = "") -> None:
        """Which proxy is used, who I am there, my remaining quota."""
        try:
            client = self.client()
        except ProxyError as e:
            text = f"rsql: {e}"
            display(render.markdown_bundle(render.code_block(text, ""), text), raw=True)
            return
        model = self.model or os.environ.get("RSQL_MODEL") or "(proxy default)"
        rows = [
            f"**proxy**: {client.description}",
            f"**batch run**: {'yes' if self.is_batch() else 'no'}; **default model**: {model}",
            self._replay_status(),
        ]
        try:
            me: Any = client.me()
        except ProxyError as e:
            rows.append(f"**me**: unavailable ({e})")
            me = None
        if isinstance(me, dict):
            rows += render_me(me)
        md = "\n".join(rows)
        # the proxy's answers (user names, limits) are shown as Markdown: made safe like an answer
        display(render.markdown_bundle(md, md.replace("**", "")), raw=True)


def _withhold_ref(name: str, val: Any, policy: ContextPolicy) -> bool:
    """Should a ``{name}`` reference to ``val`` be withheld? A variable named like a redacted
    column, or data (a Series, an array: values, not code) when rows or stats are withheld
    or its own name is redacted."""
    if policy.redacts(name):
        return True
    mod = type(val).__module__ or ""
    if mod.startswith(("pandas", "polars", "numpy", "pyarrow")):
        own = getattr(val, "name", None)
        return (not policy.sample_rows or not policy.value_stats
                or (isinstance(own, str) and policy.redacts(own)))
    return False


def _cell(v: Any) -> str:
    if isinstance(v, (dict, list)):
        v = ", ".join(f"{k}={x}" for k, x in v.items()) if isinstance(v, dict) else ", ".join(map(str, v))
    return "" if v is None else str(v).replace("|", "\\|").replace("\n", " ")


def render_me(me: dict[str, Any]) -> list[str]:
    """Markdown lines for ``GET me``: whatever keys come back (the shape may grow).

    Scalars become ``**key**: value`` lines, lists of objects (e.g. the user's limits with
    used / remaining / resets) become tables, nested objects ``key.sub`` lines.
    """
    who = next((me[k] for k in ("user", "name", "username", "identity") if me.get(k)), None)
    lines: list[str] = []
    if who is not None:
        extra = []
        if me.get("admin"):
            extra.append("admin")
        if me.get("groups"):
            extra.append("groups: " + ", ".join(map(str, me["groups"])))
        lines.append(f"**you**: {who}" + (f" ({'; '.join(extra)})" if extra else ""))
    skip = {"user", "name", "username", "identity", "admin", "groups"} if who is not None else set()
    tables: list[str] = []
    for key, val in me.items():
        if key in skip:
            continue
        if isinstance(val, list) and val and all(isinstance(x, dict) for x in val):
            cols: list[str] = []
            for item in val:
                cols += [c for c in item if c not in cols]
            tables.append(f"\n**{key}**\n\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
            tables += ["| " + " | ".join(_cell(item.get(c)) for c in cols) + " |" for item in val]
        elif isinstance(val, dict):
            for k, v in val.items():
                lines.append(f"**{key}.{k}**: {_cell(v)}")
        else:
            lines.append(f"**{key}**: {'none' if val is None else _cell(val) or '(empty)'}")
    return lines + tables


_ASK_LINE = re.compile(r"^([ \t]*)%ask(?:[ \t]+(.*?))?[ \t]*\?[ \t]*(\r?\n)?$")


def protect_question_mark(lines: list[str]) -> list[str]:
    """An IPython input transform: ``%ask what is X?`` must not become a help lookup.

    IPython turns any line ending in ``?`` into ``pinfo`` ("Object `X` not found") before
    magics run. Rewrite such ``%ask`` lines into the explicit ``run_line_magic`` call first.
    Cells that start with ``%%`` (a cell magic owns its body) are left alone.
    """
    if not lines or lines[0].lstrip().startswith("%%"):
        return lines
    out = []
    for ln in lines:
        m = _ASK_LINE.match(ln)
        if m is None or not m.group(2):  # "%ask?" is still help on %ask
            out.append(ln)
            continue
        arg = m.group(2) + "?"
        out.append(f"{m.group(1)}get_ipython().run_line_magic('ask', {arg!r}){m.group(3) or ''}")
    return out


_INSTANCES: dict[int, RSQLMagic] = {}


def load_ipython_extension(ip: Any) -> None:
    """``%load_ext rsql_magic``: register %%ask / %ask / %ask_status (and %%sql_ai if present)."""
    if id(ip) in _INSTANCES:
        return
    m = RSQLMagic(shell=ip)
    ip.register_magics(m)
    ip.events.register("post_run_cell", m.post_run_cell)
    cleanup = getattr(ip, "input_transformers_cleanup", None)
    if isinstance(cleanup, list) and protect_question_mark not in cleanup:
        cleanup.append(protect_question_mark)
    _INSTANCES[id(ip)] = m
    _load_sql_magics(ip)
    from .chat import load_ipython_extension as _load_chat  # %ask_chat; ipywidgets loads lazily

    _load_chat(ip)


def _load_sql_magics(ip: Any) -> None:
    """Register %%sql_ai from ``rsql_magic.sql.magics`` (built alongside) when it is there."""
    try:
        mod = importlib.import_module("rsql_magic.sql.magics")
    except ImportError:
        return
    fn = getattr(mod, "load_ipython_extension", None) or getattr(mod, "register", None)
    if callable(fn):
        fn(ip)
        return
    for obj in vars(mod).values():
        if inspect.isclass(obj) and issubclass(obj, Magics) and obj is not Magics and getattr(
            obj, "registered", False
        ):
            ip.register_magics(obj)


def unload_ipython_extension(ip: Any) -> None:
    m = _INSTANCES.pop(id(ip), None)
    if m is None:
        return
    try:
        ip.events.unregister("post_run_cell", m.post_run_cell)
    except ValueError:
        pass
    cleanup = getattr(ip, "input_transformers_cleanup", None)
    if isinstance(cleanup, list) and protect_question_mark in cleanup:
        cleanup.remove(protect_question_mark)
    for kind, names in (("line", ("ask", "ask_status", "ask_chat")), ("cell", ("ask",))):
        for n in names:
            ip.magics_manager.magics[kind].pop(n, None)
