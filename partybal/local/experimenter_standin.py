"""A local stand-in for Experimenter's public API, for the local stack and the tests.

Serves a recorded answer (default ``sample/experimenter/experiments_v6.json``) at
``GET /api/v6/experiments/`` on 127.0.0.1, shaped like the real one; every other path is 404.
Never deployed (the local stack and tests only)::

    .venv/bin/python -m partybal.local.experimenter_standin --port 8099
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import threading
from pathlib import Path

from ..pipeline.experimenter import API_PATH

FIXTURE = Path(__file__).resolve().parents[2] / "sample" / "experimenter" / "experiments_v6.json"


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b"[]"

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?", 1)[0]
        if path in (API_PATH, API_PATH.rstrip("/")):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
            return
        self.send_error(404)

    def log_message(self, *args):  # quiet: tests and the local stack log their own way
        pass


class StandIn:
    """``with StandIn() as s: s.url`` — serves ``fixture`` on 127.0.0.1 (port 0: any free one)."""

    def __init__(self, fixture: Path = FIXTURE, port: int = 0):
        handler = type("Handler", (_Handler,), {"body": Path(fixture).read_bytes()})
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> StandIn:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> StandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m partybal.local.experimenter_standin", description=__doc__.splitlines()[0]
    )
    p.add_argument("--port", type=int, default=8099)
    p.add_argument("--fixture", type=Path, default=FIXTURE)
    args = p.parse_args(argv)
    server = StandIn(args.fixture, args.port)
    print(f"Experimenter stand-in: {server.url}{API_PATH}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
