"""``python -m poprok COMMAND``: the command line."""

from poprok.cli import main

raise SystemExit(main())
