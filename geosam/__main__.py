"""Allow `python -m geosam` (and `torchrun -m geosam`)."""

from geosam.cli.main import cli

if __name__ == "__main__":
    cli()
