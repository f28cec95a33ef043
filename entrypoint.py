"""Container entry point of the deltatrain GitHub Action: hand over to ``pipeline.action``."""

import sys

from pipeline.action import main

if __name__ == "__main__":
    sys.exit(main())
