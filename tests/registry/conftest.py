"""The registry tests' table fixtures (``helsinki_tables``) live in ``tests/conftest.py``."""
