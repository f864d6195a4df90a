"""Serve a directory with HTTP range support: `python -m tests.support.serve DIR [PORT [HOST]]`.

Files are at http://HOST:PORT/media/<name> (HOST: 127.0.0.1 unless given, e.g. the host's
address on the containers' network: deploy/DEPLOYMENT.md); Ctrl-C stops.
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
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    with MediaServer(root, port=port, host=host) as server:
        print(f"serving {root} at {server.base_url}/media/<name> (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
