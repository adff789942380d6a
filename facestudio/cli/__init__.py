"""The command-line front: `facestudio COMMAND ...` (the console script) or `python -m facestudio COMMAND ...`.

`main.py` holds the parser, the face commands and the exit codes; one module per group of commands beside it.
Note that `facestudio.cli.main` is the function re-exported here; the module is `sys.modules["facestudio.cli.main"]`.
"""

from facestudio.cli.main import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, EXIT_USER_ERROR, build_parser, main

__all__ = ["EXIT_INTERNAL", "EXIT_OK", "EXIT_USAGE", "EXIT_USER_ERROR", "build_parser", "main"]
