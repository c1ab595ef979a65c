"""Which models a caller may use now, and at what price a request is admitted: the
entitlements after the policy window in force, the APIs an upstream speaks as sent, the worst
case a budget reserves. Apart from the request's walk (``core``), which asks it."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from rsql_common.tokens import CHARS_PER_TOKEN

from .accounting.pricing import FREE, PriceBook
from .admission.entitlements import Access, me_fields, not_allowed, resolve
from .admission.limiter import Limiter
from .admission.policy_windows import PolicyWindows
from .bodies.request import ChatRequest
from .errors import BadRequest, Forbidden
from .interface import Caller
from .parsing import image_cost
from .settings import EngineSettings
from .upstreams.pool import MEMO_MODELS, Pool
from .upstreams.prices import Price


class ModelChoice:
    """The models each caller may use, and the price their requests reserve."""

    def __init__(
        self,
        settings: EngineSettings,
        pool: Pool,
        limiter: Limiter,
        windows: PolicyWindows,
        prices: PriceBook,
        *,
        local_models: tuple[str, ...],
        timezone: ZoneInfo,
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.limiter = limiter
        self.windows = windows
        self.prices = prices
        self.local_models = local_models  # what a local-only window allows
        self.timezone = timezone  # the admin's, for the window times GET me shows
        self._image_costs: dict[str, int] = {}

    def wide_window(self, model: str) -> bool:
        """Whether an upstream serving `model` says its window holds a million tokens (its
        ``context_windows``): a request there may hold more pages of PDFs."""
        return any(
            k.spec.context_windows.get(model, 0) >= 1_000_000 for k in self.pool.serving(model)
        )

    def image_cost(self, model: str) -> int:
        """The most one image may cost on `model` (``parsing.image_cost``), remembered with the
        pool's catalogue: the same every request."""
        cost = self._image_costs.get(model)
        if cost is None:
            serving = self.pool.serving(model)
            cost = image_cost(serving, model)
            if serving and self.pool.catalogue_fixed and len(self._image_costs) < MEMO_MODELS:
                self._image_costs[model] = cost
        return cost

    async def access(self, caller: Caller) -> Access:
        """The models `caller` may use now and their defaults, after the window in force."""
        await self.windows.refresh()
        found = self.windows.in_force(caller.user, caller.groups)
        return resolve(
            self.limiter.rules_for(caller.user, caller.groups),
            found,
            served=self.pool.models(),
            local_models=self.local_models,
            proxy_default=self.settings.default_model,
            tutoring=self.windows.tutoring(caller.user, caller.groups),
        )

    def speaks(self, api: str, model: str) -> bool:
        """Whether a request in `api`'s shape for `model` can go upstream as it was sent: every
        upstream serving the model speaks that API itself, and nothing of it is redacted (the
        patterns read and rewrite the chat form); else it is translated (``translated``)."""
        serving = self.pool.serving(model)
        return (
            bool(serving)
            and not self.settings.redact_patterns
            and all(api in key.spec.native_apis for key in serving)
        )

    def check_model(self, access: Access, model: str) -> None:
        """Refuse `model` unless `access` allows it: inside a window, with the window's message."""
        if access.allows(model):
            return
        if access.window is not None and access.span is not None:
            raise self.windows.refusal(access.window, access.span, access.models)
        raise not_allowed(model, access)

    async def me_access(self, caller: Caller) -> dict[str, Any]:
        """The entitlement part of GET me: models, defaults, the window in force."""
        return me_fields(await self.access(caller), self.timezone)

    def admission_price(self, req: ChatRequest, caller: Caller) -> Price:
        """The price a reservation assumes; under a budget, also makes it a true worst case.

        A budget can only hold what it can price: a model without a known price is refused
        (unless the admin opted in with unpriced_models = "free"), and a request that set no
        max_tokens is capped at the default it was reserved for, or its answer could cost more.
        A request that may be billed at its model's long-context rates is reserved at them,
        and one asking for Claude's long context of a model with no such rates is refused, as
        is audio, under a budget, of a model priced without audio rates.
        """
        self._check_long_context(req)
        price = self.prices.max_price(req.model)
        budgeted = self.limiter.budgeted(caller.user, caller.groups)
        if budgeted and self.settings.unpriced_models != "free":
            self._check_audio(req)
        if price is None:
            if budgeted and self.settings.unpriced_models != "free":
                raise Forbidden(
                    f"model {req.model!r} has no known price, and a daily budget applies to your "
                    "requests, so it cannot be used. An admin can set its price on its upstream "
                    f'("prices": {{"{req.model}": {{"input": USD per 1M tokens, "output": ...}}}} in '
                    "c.RSQLProxy.upstreams) or let unpriced models cost 0 with "
                    'c.RSQLProxy.unpriced_models = "free"',
                    code="model_not_priced",
                    extra={"param": "model"},
                )
            price = FREE
        if budgeted and not req.max_tokens_set and price.output > 0 and req.cap_field:
            # the provider sees the limit the reservation assumed (max_completion_tokens: the
            # name every current OpenAI-compatible chat API takes, reasoning models included;
            # the legacy completions API knows only max_tokens)
            req.payload[req.cap_field] = req.max_tokens
        req.long_context = self._may_be_long(req, price)
        return price.longest if req.long_context else price.at(0)

    def _check_long_context(self, req: ChatRequest) -> None:
        """Refuse a request that asks for a model's long context (a Messages request's
        ``anthropic-beta: context-1m-...``) on a model an upstream prices without long-context
        rates: it would be charged less than it costs."""
        asked = req.long_context_asked
        if asked is None or not self.prices.lacks_long_context(req.model):
            return
        header, value = asked
        raise BadRequest(
            f"'{header}: {value[:60]}' asks for the model's long context, which its provider "
            "bills at its long-context rates once a prompt is past 200,000 tokens, and model "
            f"{req.model!r} has no long-context price here, so it cannot be charged what it "
            "costs. Send the request without it, or an admin sets the model's price "
            f'past the threshold on its upstream ("prices": {{"{req.model}": {{"input": ..., '
            '"output": ..., "long_context": {"above": 200000, "input": ..., "output": ...}}} '
            "in c.RSQLProxy.upstreams)",
            code="long_context_not_priced",
            extra={"param": header},
        )

    def _check_audio(self, req: ChatRequest) -> None:
        """Refuse, under a budget, audio in or out of a model an upstream prices without that
        audio rate: the provider bills audio tokens at several times the text rates, and the
        budget would be charged the text ones."""
        rate = self.prices.missing_audio_rate(req.model, req.audio)
        if rate:
            field = req.audio_in if rate == "audio_input" else req.audio_out
            raise BadRequest(
                f"{field}: model {req.model!r} has no price for audio here ({rate!r}), which its "
                "provider bills at its own rates, several times the text ones, and a daily "
                "budget applies to your requests, so it cannot be charged what it costs. Send "
                "text, or an admin sets the model's audio rates on its upstream "
                f'("prices": {{"{req.model}": {{"input": ..., "output": ..., "{rate}": USD per '
                "1M tokens}} in c.RSQLProxy.upstreams)",
                code="audio_not_priced",
                extra={"param": field},
            )

    def _may_be_long(self, req: ChatRequest, price: Price) -> bool:
        """Whether `req` may be billed at `price`'s long-context rates. A provider that bills
        them only on a request that asks (``long_context_on_request``: Anthropic, with its
        long-context beta; it takes no prompt past 200K tokens without it, and the beta goes on
        only with a Messages request sent as it was) bills them only then. Elsewhere a prompt
        estimate (four characters a token) is no bound: a token is at least one character, so a
        chat form estimated past a quarter of the threshold may be past it; and a request sent as
        it was may hold prompt its chat form leaves out (reasoning items), so it always may."""
        lc = price.long_context
        if lc is None:
            return False
        if req.long_context_asked is not None:
            return True
        serving = self.pool.serving(req.model)
        if serving and all(key.spec.long_context_on_request for key in serving):
            return False
        return req.native or req.prompt_tokens * CHARS_PER_TOKEN > lc.above
