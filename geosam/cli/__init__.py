"""CLI floor: click commands that parse, report progress and call the library."""
