"""The APIs callers speak besides OpenAI's Chat Completions, each a translation onto the one path
the engine walks (docs/architecture.md, "One request's way").

The formats themselves (requests and answers, both directions) live in ``engine/formats``;
here is what the engine keeps of each API: ``native`` (which APIs may go upstream as sent),
``stored`` (the Responses API's stored responses, each its owner's) and ``inline`` (the
editor's inline suggestions, into one request for the completion model). What a request may do
and what it is charged does not depend on the API it came by: admission, budgets,
entitlements, windows, redaction, failover and the usage log are the engine's, once.
"""

API_NAMES = ("chat", "completions", "embeddings", "responses", "messages")
