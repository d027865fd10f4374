"""The training tests' table fixtures (``manhattan_tables``) live in ``tests/conftest.py``."""
