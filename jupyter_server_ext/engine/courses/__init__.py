"""A course's rules, enforced at the proxy for every client a student brings (issue 75): the
tutor mode (``tutor``: the course's instruction first on every API, completions of names only)
and the course log (``log``: what students asked and were answered, for their course staff)."""
