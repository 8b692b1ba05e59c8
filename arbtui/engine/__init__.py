"""The engine: detector, risk, execution, journal and analytics behind one facade.

Importing this package loads no UI code (``tests/unit/test_import_hygiene.py``).
"""
