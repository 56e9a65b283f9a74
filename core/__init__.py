"""Delta upload service core: everything but the web framework.

Handlers in `functions/` parse HTTP input, call into this package and map its
errors; nothing here imports Flask or functions-framework.
"""

__version__ = "0.1.0"
