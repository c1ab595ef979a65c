"""The APIs other than chat completions, as layers above the engine: each is built on an
``Engine`` by the host (``handlers.base.ProxyContext``) and answers on ``Engine.chat``, the one
path. ``translated``: the Responses and Messages APIs (their formats in ``engine/formats``);
``inline``: the editor's inline completions (their body and prompt in ``apis.inline``)."""
