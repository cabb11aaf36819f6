"""``pathexp`` subcommands, one module each, discovered by :func:`analysis.cli.build_parser`.

A module here defines ``register(subparsers)``, which adds its parser and sets
``func=run``; ``run(args) -> int`` calls library functions and prints.
"""
