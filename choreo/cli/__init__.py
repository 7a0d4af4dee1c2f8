"""The `choreo` command line (Typer + Rich). Each module holds one command group."""
