"""`python -m rwkv_app generate ...`; see rwkv_app/cli.py."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
