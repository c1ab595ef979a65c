"""What may leave the kernel: the admin's context policy, the user's own, and the preview.

The admin sets ``context_policy`` once on the proxy; the kernel reads it from ``GET {proxy}me``
and every collector applies it (see :class:`ContextPolicy`). The user can add a stricter policy
of their own (``%config RSQLMagic.context_policy = {...}``, or ``--no-data``); the two are merged
so that the stricter setting always wins: no user setting can loosen the admin's policy.

When the admin's policy cannot be read because the proxy answers ``me`` with an error (other
than "no such route" and a refused caller), the kernel fails closed: it sends schemas only, as
if the admin had withheld every value. When the proxy cannot be reached at all (refused, timed
out), or refuses the caller (401, or a 403 that is not a policy's: a wrong or expired token),
the client is marked unavailable: nothing is sent (the cell fails with that one error, or is
answered from the replay store without a request). A proxy that has no ``me`` route, or a ``me`` without
``context_policy``, has no policy (an older proxy, or a plain OpenAI-compatible endpoint).

``preview`` asks the proxy what the upstream would see after its own pattern redaction
(``POST {proxy}redact``); :func:`context_report` renders all of it for ``--show-context`` and
the chat panel's context view.
"""

from __future__ import annotations

import ast
import re
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from rsql_common.context_policy import ContextPolicy

from .errors import ProxyError

__all__ = [
    "ContextPolicy",
    "PolicyState",
    "Preview",
    "cached_me",
    "context_report",
    "effective_policy",
    "preview",
    "withheld_summary",
]

POLICY_TTL_S = 60.0  # how long one ``me`` answer is trusted: an admin's change shows soon
POLICY_TIMEOUT_S = 5.0  # the most a cell waits for ``me``; then it fails closed


# -- the admin's policy, from ``GET me`` --------------------------------------------------


@dataclass
class PolicyState:
    """The admin's policy as last read, and what the user should know about it."""

    policy: ContextPolicy | None  # None: there is no admin policy (in-process, old proxy)
    note: str = ""
    read_at: float = 0.0
    # the whole ``GET me`` answer it came from (the models, defaults and window in force ride
    # along: one read serves both); None when it could not be read
    me: dict[str, Any] | None = None


_CACHE: dict[tuple[str, str], PolicyState] = {}
_ME_MISSED: dict[tuple[str, str], float] = {}  # when `me` last could not be read, per proxy+token
_LOCK = threading.Lock()


def _cache_key(client: Any) -> tuple[str, str] | None:
    if getattr(client, "base_url", None):
        return (client.base_url, client.token or "")
    return None


def remember_me(client: Any, me: Any) -> None:
    """Store a ``me`` answer read for another reason (the chat's usage line)."""
    key = _cache_key(client)
    if key is not None and isinstance(me, dict):
        with _LOCK:
            _CACHE[key] = _state_from_me(me)
            _ME_MISSED.pop(key, None)


def _state_from_me(me: dict, source: str = "admin") -> PolicyState:
    cp = me.get("context_policy")
    if cp is None:
        return PolicyState(None, "", time.monotonic(), me)
    return PolicyState(ContextPolicy.from_dict(cp, source), "", time.monotonic(), me)


def admin_policy(
    client: Any, *, ttl: float = POLICY_TTL_S, timeout: float = POLICY_TIMEOUT_S
) -> PolicyState:
    """The admin's policy for ``client``'s proxy, cached for ``ttl`` seconds per proxy+token.

    No proxy at all (replay only): no admin policy, nothing is sent anyway. The in-process
    engine: its ``me()``'s ``context_policy`` if it has one (no admin otherwise).
    """
    if client is None or getattr(client, "unavailable", None) is not None:
        return PolicyState(None, "no proxy: the admin's context policy is unknown")
    if getattr(client, "engine", None) is not None:
        fn = getattr(client.engine, "me", None)
        try:
            me = fn() if callable(fn) else {}
        except Exception:
            me = {}
        # no admin here: the engine's own settings (the user's, like their keys)
        return _state_from_me(me if isinstance(me, dict) else {}, "engine")
    key = _cache_key(client)
    now = time.monotonic()
    with _LOCK:
        hit = _CACHE.get(key) if key else None
    if hit is not None and now - hit.read_at < ttl:
        return hit
    try:
        me = client.me(timeout=min(timeout, float(getattr(client, "timeout", timeout) or timeout)))
        state = _state_from_me(me if isinstance(me, dict) else {})
    except ProxyError as e:
        if e.status in (404, 405):  # no `me` route: not our proxy, or one too old for policies
            state = PolicyState(None, "", now)
        elif e.status == 0 or (e.status in (401, 403) and not e.refused_by_policy):
            # unreachable (refused, timed out), or the caller refused (a wrong or expired
            # token, one without the service's scope): this client sends nothing from now on,
            # so the cell fails with this one error, said once, or is answered from the replay
            # store, which sends nothing either; a context built without the policy never
            # leaves the kernel. No note: "sending schemas only" would tell of a request that
            # is never made
            client.unavailable = e
            return PolicyState(None, f"the proxy cannot be used: {e}", now)
        else:
            # fail closed: a policy we cannot read may withhold anything
            state = PolicyState(
                ContextPolicy.strict("unreadable"),
                f"could not read the admin's context policy ({e}): sending schemas only, no values",
                now,
            )
            if key:
                with _LOCK:
                    _CACHE.pop(key, None)
            return state  # not cached: the next cell tries again
    if key:
        with _LOCK:
            _CACHE[key] = state
    return state


def cached_me(client: Any) -> dict[str, Any] | None:
    """``GET me`` for `client`, read at most once per :data:`POLICY_TTL_S` per proxy and token
    (the read the admin's policy makes), or None when it cannot be read: what depends on it
    (the user's default model, the models they may use) then falls back, never fails. A read
    that failed is not tried again for that long either: a proxy in trouble is not asked more."""
    key, now = _cache_key(client), time.monotonic()
    with _LOCK:
        missed = _ME_MISSED.get(key) if key else None
    if missed is not None and now - missed < POLICY_TTL_S:
        return None
    try:
        me = admin_policy(client).me
    except Exception:  # an engine or proxy answering in a way we do not know: unknown
        me = None
    if me is None and key:
        with _LOCK:
            _ME_MISSED[key] = now
    return me


def effective_policy(client: Any, local: Any = None) -> tuple[ContextPolicy, list[str]]:
    """The admin's policy merged with the user's ``local`` dict (stricter wins), and notes."""
    state = admin_policy(client)
    pol = state.policy or ContextPolicy()
    if local:
        pol = pol.merge(ContextPolicy.from_dict(local, "user"))
    if state.policy is not None:
        pol = replace(pol, admin=state.policy)
    notes = [state.note] if state.note and state.policy is not None else []
    return pol, notes


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()
        _ME_MISSED.clear()


# -- the proxy's redaction preview --------------------------------------------------------


@dataclass
class Preview:
    messages: list[dict]  # what the upstream would see
    counts: dict[str, int] = field(default_factory=dict)  # masked values per type
    note: str = ""  # why there is no preview, when there is none
    available: bool = False


def preview(client: Any, messages: list[dict]) -> Preview:
    """What the upstream would see after the proxy's pattern redaction (``POST redact``)."""
    if client is None or getattr(client, "unavailable", None) is not None:
        why = getattr(client, "unavailable", None)
        first = (str(why).splitlines() or ["no proxy"])[0] if why else "no proxy"
        return Preview(messages, note=f"nothing would be sent ({first.rstrip('.: ')})")
    try:
        data = client.redact(messages, timeout=POLICY_TIMEOUT_S)
    except ProxyError as e:
        if e.status in (404, 405):
            return Preview(
                messages,
                note="this proxy has no redaction preview (POST redact): "
                "shown as the kernel sends it",
            )
        return Preview(messages, note=f"redaction preview unavailable ({e})")
    out = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(out, list):
        return Preview(messages, note="the proxy's redaction preview had no messages")
    counts = data.get("redactions") if isinstance(data.get("redactions"), dict) else {}
    clean = {str(k): int(v) for k, v in counts.items() if isinstance(v, (int, float)) and v}
    return Preview(out, clean, available=True)


# -- what was withheld --------------------------------------------------------------------

_PLURAL = {"email": "emails", "phone": "phones", "card": "cards", "ip": "IPs"}


def _plural(kind: str, n: int) -> str:
    if n == 1:
        return kind
    return _PLURAL.get(kind, kind if kind.endswith("s") else kind + "s")


def _admin_words(admin: ContextPolicy) -> str:
    if admin.source == "unreadable":
        return "the kernel (the admin's policy could not be read)"
    if admin.source == "engine":
        return "the in-process engine's context_policy"
    return "the admin's policy"


_USER_WORDS = "your policy (RSQLMagic.context_policy)"


def _label(col: str) -> Any:
    """A withheld column's label from its text: a MultiIndex column's tuple is read back (as
    the policy decided on its levels), anything else stays text."""
    if col.startswith("(") and col.endswith(")") and len(col) <= 2000:
        try:
            label = ast.literal_eval(col)  # literals only: nothing in a column name runs
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return col
        if isinstance(label, tuple):
            return label
    return col


def withheld_summary(
    ctx: Any, policy: ContextPolicy, pv: Preview | None, no_data: bool = False
) -> str:
    """One line: what the policy withheld (and whose policy it was), what the proxy masks.

    e.g. ``withheld by the admin's policy: values of customers.email, customers.phone; sample
    rows: sent; the proxy will mask 3 emails, 1 phone``.
    """
    admin = policy.admin
    cols = list(getattr(ctx, "withheld", []) or [])
    by_admin: list[str] = []
    by_user: list[str] = []
    for entry in cols:
        col = entry.split(".", 1)[1] if "." in entry else entry
        col = col.removesuffix(" (index)")
        (by_admin if admin is not None and admin.redacts(_label(col)) else by_user).append(entry)
    parts: list[str] = []
    if by_admin and admin is not None:  # (by_admin holds entries only when admin is given)
        parts.append(f"withheld by {_admin_words(admin)}: values of " + ", ".join(by_admin))
    if by_user:
        parts.append(f"withheld by {_USER_WORDS}: values of " + ", ".join(by_user))
    if not cols:
        parts.append(
            "withheld columns: none"
            + (
                " (no column here matches " + ", ".join(policy.redact_columns) + ")"
                if policy.redact_columns
                else ""
            )
        )

    def whose(flag: str) -> str:
        if admin is not None and not getattr(admin, flag):
            return _admin_words(admin)
        return _USER_WORDS

    if not policy.sample_rows:
        parts.append(f"sample rows: withheld by {whose('sample_rows')}")
    elif no_data:
        parts.append("sample rows: withheld (--no-data)")
    else:
        parts.append("sample rows: sent")
    if not policy.value_stats:
        parts.append(f"value statistics: withheld by {whose('value_stats')}")
    elif no_data:
        parts.append("value ranges and examples: withheld (--no-data)")
    if pv is not None:
        if pv.available:
            if pv.counts:
                parts.append(
                    "the proxy will mask "
                    + ", ".join(f"{n} {_plural(k, n)}" for k, n in sorted(pv.counts.items()))
                )
            else:
                parts.append("the proxy's redaction masks nothing here")
        elif pv.note:
            parts.append(pv.note)
    return "; ".join(parts)


def context_report(
    messages: list[dict],
    ctx: Any,
    policy: ContextPolicy,
    pv: Preview,
    *,
    header: str = "",
    no_data: bool = False,
) -> str:
    """The text of ``--show-context`` and the chat's context view: a summary, then every
    message as the upstream would see it (after the policy and the proxy's redaction)."""
    lines = [header] if header else []
    lines.append(withheld_summary(ctx, policy, pv, no_data))
    lines.append(
        "policy in effect: "
        + policy.describe()
        + (f" (set by {policy.source})" if policy.source else "")
    )
    what = "after the proxy's redaction" if pv.available else "as the kernel sends them"
    lines.append(f"messages {what}:")
    for m in pv.messages:
        content = m.get("content") if isinstance(m, dict) else m
        role = m.get("role", "?") if isinstance(m, dict) else "?"
        body = content if isinstance(content, str) else repr(content)
        lines.append(f"----- {role} -----\n{body}")
    return "\n".join(lines)


_R_FRAME = re.compile(r"^### .*`([^`]+)`")
_R_REDACTED = re.compile(r"^- (.+?): .*\(values withheld by policy\)$")


def withheld_in_text(text: str, default_owner: str = "") -> list[str]:
    """``frame.column`` names a collector marked as withheld in its text (R's output)."""
    out: list[str] = []
    owner = default_owner
    for line in text.split("\n"):
        m = _R_FRAME.match(line)
        if m:
            owner = m.group(1)
            continue
        m = _R_REDACTED.match(line)
        if m:
            out.append(f"{owner}.{m.group(1)}" if owner else m.group(1))
    return out
