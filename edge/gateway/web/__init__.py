"""The greenhouse page: the farmer's Persian page on the greenhouse's LAN, served by ``edge web``, a process of its
own beside the daemon (it reads the buffer and asks the daemon over its control socket; the daemon never imports
this package). ``config.py`` (the ``web:`` section), ``auth.py`` (the secret file, sessions, CSRF, the attempts
limit), ``view.py`` (the page from a status report, rendered to HTML with inline SVG charts), ``server.py`` (the
HTTP server and its requests). Docs: docs/operations.md, "The greenhouse page"."""
