"""Anthropic's Messages API, both directions (see the package ``formats``): ``request`` and
``answer`` for clients that speak it to the proxy (the ``anthropic`` SDK, Claude Code),
``upstream``, ``upstream_answer`` and ``http`` for an Anthropic upstream the proxy speaks it to,
``stop_reasons`` for both."""
