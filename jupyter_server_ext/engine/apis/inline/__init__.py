"""The editor's inline completions (``{proxy}inline``): ``completion`` turns the cell and the
kernel's names into one request for the completion model and its answer into plain text to
insert; ``edge`` answers it on ``Engine.chat`` in the caller's "inline" rate class and says
what the editor's status item shows."""
