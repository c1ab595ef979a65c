"""Request and answer bodies: what a caller sends, and what goes back.

``request`` parses and bounds a request of each endpoint (chat, completions, embeddings) into
what goes upstream and what it may cost; ``streams`` reads and shapes server-sent events;
``replies`` builds the JSON, stream and cache-hit answers and settles their usage; ``cache``
answers repeated deterministic requests; ``stop_reasons`` says why an answer ended in both
wire formats. Read on every API, chat and the wire formats above it alike: ``left_out`` (what a
request's chat form leaves out), ``hosted_kinds`` (the providers' hosted tool types, by kind)
and ``reading`` (what providers send, read as the hostile input it is).
"""
