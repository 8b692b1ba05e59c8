"""arbtui: a terminal operator console for cross-venue arbitrage.

This package imports nothing eagerly: ``import arbtui.engine`` must not load Textual
(see ``tests/unit/test_import_hygiene.py``).
"""

__version__ = "0.1.0"
