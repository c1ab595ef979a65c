"""Request and answer bodies: what a caller sends, and what goes back.

``request`` parses and bounds a request of each endpoint (chat, completions, embeddings) into
what goes upstream and what it may cost; ``streams`` reads and shapes server-sent events;
``replies`` builds the JSON, stream and cache-hit answers and settles their usage; ``cache``
answers repeated deterministic requests; ``stop_reasons`` says why an answer ended in both
wire formats.
"""
