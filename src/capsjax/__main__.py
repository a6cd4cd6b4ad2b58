from capsjax.cli import entry_point

entry_point()
