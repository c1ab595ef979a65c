"""The small leaves both packages read the same way, depending on neither: which fenced blocks
of an answer are SQL (:mod:`.fences`: the kernel runs them, the proxy must never map a value
into them), the stages where ``%%sql_ai``'s SQL fails (:mod:`.stages`: the words an escalation
header may carry), text safe for a terminal (:mod:`.terminal`), and the one token estimate
(:mod:`.tokens`: the kernel trims context by it, the proxy reserves by it), and whether JupyterLab
finds the frontend extension of a checkout (:mod:`.labextension`: ``%ask_status`` and the
server's log say so once when it does not), and a setting declared once, as a dataclass field
(:mod:`.settings`: its type, default, help and range, from which the proxy makes its trait)."""
