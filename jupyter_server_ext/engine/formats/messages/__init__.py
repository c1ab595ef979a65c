"""Anthropic's Messages API (``POST v1/messages``) as the proxy's clients speak it (the
``anthropic`` SDK, Claude Code), both directions (see the package ``formats``): ``request``
turns a Messages request into the chat form, ``answer`` a chat answer back into a Message or its
stream events, ``usage`` reads what a Message sent as it came used, and ``stop_reasons`` is the
one map of why an answer ended, which the Anthropic upstream (``upstreams.anthropic``) reads
too."""
