"""Test support: the pytest plugin (broker, registry fixtures) and process helpers for fault tests."""
