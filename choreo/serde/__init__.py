"""Serde layers: bytes ↔ typed events."""
