"""What leaves for the provider, and what comes back: personal data masked on the way out
(``redact``), the masked values mapped back into answers only where that is safe (``mapback``,
with ``mapback_context`` saying where a value may go), and long texts redacted in a worker
process so a large request cannot stall the event loop (``offload``).
"""
