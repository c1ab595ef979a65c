"""The ``c.RSQLProxy`` settings of the editor's inline completions (``{proxy}inline``).

A base class of ``config.RSQLProxy``, so admins write them as every other proxy setting; kept
apart because they are one feature's: the switch, the model, how it is asked, and the rate
class of its own (docs/admins/completions.md).
"""

from __future__ import annotations

from collections.abc import Sequence

from traitlets import Bool, Integer, List, Unicode
from traitlets.config import Configurable

from ..engine import Rate, UpstreamSpec, parse_rates
from ..engine.errors import Problems
from ..engine.settings import InlineSettings
from .declared import trait


class InlineCompletionSettings(Configurable):
    """Inline completions in JupyterLab and Notebook 7."""

    inline_completions = Bool(
        True,
        help="""Whether users get inline completions (ghost text in JupyterLab and Notebook 7's
        editors, from {proxy}inline). Per group or user: "completions" in limit_overrides
        ({"group:exam": {"completions": False}}); for a span of time: a policy window's
        "completions".""",
    ).tag(config=True)
    completion_model = trait(InlineSettings, "model")
    completion_fim = trait(InlineSettings, "fim")
    completion_max_tokens = trait(InlineSettings, "max_tokens")
    completion_user_limits = List(
        Unicode(),
        ["240/minute", "3000/day"],
        help="""Inline completions one user may ask for, in the notation of user_limits. Their own
        rate class: typing never uses up the user_limits that %%ask and the chat draw on. The
        cost is charged to the same daily budget. 240/minute is the most the editor asks at its
        250 ms debounce, so someone typing is never refused; a script that asks faster is.""",
    ).tag(config=True)
    completion_user_concurrency = Integer(
        2,
        help="""Inline completions of one user in flight at once (a keystroke cancels the one
        before it; 0: no limit).""",
    ).tag(config=True, bound=">= 0")

    def completion_limits(self) -> tuple[tuple[Rate, ...], int]:
        """The completion rate class's windows, checked (every mistake named), and its
        concurrency (its range: ``RSQLProxy.range_problems``)."""
        rates = parse_rates(self.completion_user_limits, where="RSQLProxy.completion_user_limits")
        return rates, self.completion_user_concurrency

    def inline_settings(self, specs: Sequence[UpstreamSpec]) -> InlineSettings:
        """The completion settings, checked against the upstreams that will serve them."""
        model = self.completion_model
        problems = Problems()  # completion_max_tokens' range: RSQLProxy.range_problems
        serving = [s for s in specs if model and s.may_serve(model)]
        if model and not serving:
            problems.append(
                f"RSQLProxy.completion_model {model!r} is served by no upstream; upstream models: "
                f"{sorted({m for s in specs for m in s.models})}"
            )
        if self.completion_fim:
            odd = [s.name for s in serving or specs if not s.speaks("completions")]
            if odd:
                problems.append(
                    f"RSQLProxy.completion_fim: upstream {odd[0]!r} speaks no v1/completions "
                    "with a suffix; set completion_fim = False (a chat request)"
                )
        problems.refuse()
        return InlineSettings(
            model=model,
            fim=self.completion_fim,
            max_tokens=self.completion_max_tokens,
        )
