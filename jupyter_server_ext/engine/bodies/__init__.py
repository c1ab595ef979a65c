"""Request and answer bodies: what a caller sends, and what goes back.

``decode`` reads a body's bytes as JSON at a bounded cost; ``request`` parses and bounds a
request of each endpoint (chat, completions, embeddings) into what goes upstream and what it may
cost; ``media`` what images and files in it may cost; ``streams`` reads and shapes server-sent
events; ``cache`` answers repeated deterministic requests; ``json_codec`` writes JSON fast.
Read on every API, chat and the wire formats above it alike: ``left_out`` (what a request's chat
form leaves out), ``usage`` (what an answer says it used, and the providers' hosted tool types
read by kind) and ``reading`` (what providers send, read as the hostile input it is).
"""
