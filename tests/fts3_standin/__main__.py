"""Run the FTS3 stand-in: ``python -m tests.fts3_standin --port 8446``."""

from __future__ import annotations

import argparse

import uvicorn

from tests.fts3_standin.server import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fts3_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8446)
    parser.add_argument("--workers", type=int, default=4, help="parallel copies (default 4)")
    parser.add_argument("--token", help="require this bearer token (default: no auth)")
    parser.add_argument(
        "--schedule-delay",
        type=float,
        default=0.0,
        help="seconds each queued file waits before its copy starts",
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    app = create_app(args.workers, token=args.token, schedule_delay=args.schedule_delay)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
