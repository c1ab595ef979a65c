"""What the admin sees of each key (``GET admin/upstreams``, the dashboard): its account, state,
cooldown, breaker, the use of its account's limits, what the provider says is left, and its
recent errors. Aliases only: a key's text never appears here.
"""

from __future__ import annotations

import time
from typing import Any

from .pool import Pool


def key_report(pool: Pool, now: float, wall: float) -> list[dict[str, Any]]:
    """Per key of `pool`, at monotonic `now` (wall-clock `wall`), for the admin."""

    def at(mono: float) -> str | None:
        if mono <= now:
            return None
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + mono - now))

    out = []
    for key in pool.keys:
        spec = key.spec
        buckets = {model: b for (acct, model), b in pool.buckets.items() if acct == spec.account}
        out.append(
            {
                "alias": key.alias,
                "account": spec.account,
                "provider": spec.provider,
                # a self-hosted server's own models when it listed them, else the configured ones
                "models": sorted(spec.discovered) or list(spec.models),
                "max_in_flight": spec.max_in_flight or None,
                "state": pool.key_state(key),
                "disabled_reason": key.disabled or None,
                "cooldown_until": at(max((b.cool_until for b in buckets.values()), default=0.0)),
                "breaker": {
                    "state": key.breaker.state(now),
                    "failures": key.breaker.failures,
                    "open_until": at(key.breaker.open_until),
                },
                "in_flight": key.inflight,
                "limits": [str(r) for r in spec.limits]
                + [f"{r} tokens" for r in spec.token_limits],
                "account_use": {model: b.used(now) for model, b in buckets.items()},
                "provider_remaining": {
                    model: {"requests": b.prov_req_left, "tokens": b.prov_tok_left}
                    for model, b in buckets.items()
                    if b.prov_req_left is not None or b.prov_tok_left is not None
                },
                "recent_errors": [
                    {
                        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall + t - now)),
                        "error": what,
                    }
                    for t, what in key.recent_errors[-10:]
                ],
            }
        )
    return out
