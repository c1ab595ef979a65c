"""Provider kinds: how each provider's native API is spoken.

The engine and its callers speak OpenAI's chat completions; the modules here say how each kind
of provider is spoken instead, one concern a module. A translation is pure functions with no
I/O (the request body, the answer, the stream event by event, the error body, the rate-limit
headers): ``anthropic`` for Anthropic's Messages API, with ``anthropic_http`` for its error
bodies and rate-limit headers.
"""
