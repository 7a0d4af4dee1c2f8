"""`choreo schemas` — placeholder."""
import typer
app = typer.Typer()
