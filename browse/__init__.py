"""Reading the archive back for people: the ``ls``, ``show``, ``cat``, ``search`` and ``stats``
commands and the ``browse`` web UI. Imports nothing of ours but ``storage``."""
