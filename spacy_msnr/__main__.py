"""`python -m spacy_msnr <command>`: the package's command line."""
from .cli import app


def main() -> None:
    """Run the command line."""
    app()


if __name__ == "__main__":
    main()
