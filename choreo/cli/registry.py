"""`choreo registry` — placeholder until the registry server lands."""
def registry() -> None:
    """Run the schema registry."""
