"""Container entry point of the deltatrain GitHub Action: hand over to ``pipeline.action``."""

from pipeline.action import main
from pipeline.cli import exit_process

if __name__ == "__main__":
    exit_process(main())
