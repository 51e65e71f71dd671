"""Helpers the tests share, imported as `from tests.support.<module> import ...`."""
