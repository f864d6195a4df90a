"""Serve a directory with HTTP range support: `python -m tests.support.serve DIR [PORT]`.

Files are at http://127.0.0.1:PORT/media/<name>; Ctrl-C stops.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from pathlib import Path

from tests.support.media_server import MediaServer


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "tests/media")
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 8080
    with MediaServer(root, port=port) as server:
        print(f"serving {root} at {server.base_url}/media/<name> (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
