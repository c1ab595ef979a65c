"""The notebook magics, together, on top of the kernel side: nothing imports them but the
registrar (:mod:`rsql_magic`, ``%load_ext rsql_magic``).

- ``ask``: ``%%ask``, ``%ask``, ``%ask_status`` and ``%ask_cost`` (:class:`RSQLMagic`).
- ``sql_ai``: ``%%sql_ai`` (:class:`SqlAIMagics`).
- ``ask_chat``: ``%ask_chat`` (:class:`ChatMagics`), which opens the chat panel
  (:mod:`rsql_magic.chat`).

Each stands on the shell's :class:`~rsql_magic.session.Session` (the settings, the model, the
client, batch runs, context requests, the %%sql_ai runner) and adds only its options and what
it shows. The classes' names are their ``%config`` names (``RSQLMagic.<name>``,
``SqlAIMagics.<name>``): they do not change.
"""
