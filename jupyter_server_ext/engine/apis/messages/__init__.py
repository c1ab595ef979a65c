"""Anthropic's Messages API (``POST v1/messages``) as the proxy's clients speak it (the
``anthropic`` SDK, Claude Code), both directions, pure: ``request`` turns a Messages request
into the chat form, ``answer`` a chat answer back into a Message or its stream events, ``usage``
reads what a Message sent as it came used, ``native`` what one sent as it came needs (its beta
header, service tiers, server tools, wider PDF pages). Why an answer ended, in both APIs' words, is the
Anthropic upstream's (``upstreams.anthropic.stop_reasons``), which speaks the same API."""
