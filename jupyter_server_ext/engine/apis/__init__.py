"""The APIs callers speak besides OpenAI's Chat Completions, one folder each, as layers above
the engine's one path: each request is translated onto ``Engine.chat`` (docs/architecture.md,
"One request's way"), and the engine imports none of them (``scripts/structure.py``).

- ``messages/``: Anthropic's Messages API as clients speak it (the ``anthropic`` SDK, Claude
  Code): ``request`` (a Messages request into the chat form), ``answer`` (the chat answer back
  as a Message, its stream events and errors), ``usage`` (a Message's usage and server tools,
  for settling one sent as it came).
- ``responses/``: OpenAI's Responses API (Codex): ``request``, ``answer``, ``stream`` (its typed
  events), ``usage``, and ``stored`` (stored responses, each its owner's, in the state backend).
- ``inline/``: the editor's inline completions: ``completion`` (the cell and the kernel's names
  into one request for the completion model, its answer into plain text to insert) and ``edge``
  (``{proxy}inline`` on the engine, and what the editor's status item shows).
- ``translated``: the edge of the Messages and Responses APIs (built on an ``Engine`` by the
  host, ``handlers.base.ProxyContext``): a request goes as it came where every serving upstream
  speaks its API (``native``: what the engine needs of it, written on the request), else in the
  chat form, its answer translated back; ``chat``: a chat answer's or chunk's fields read
  whatever they hold, for those translations.

Each API's HTTP shape (its handler and error bodies) is a mixin in ``handlers/apis.py``. What a
request may do and what it is charged does not depend on the API it came by: admission,
budgets, entitlements, windows, redaction, failover and the usage log are the engine's, once.
"""

API_NAMES = ("chat", "completions", "embeddings", "responses", "messages")
