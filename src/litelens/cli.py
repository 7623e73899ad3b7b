"""The `litelens` command: `serve`, `keys`, `export`, `doctor`, `tail`, `demo`, `fake-provider`, `receiver`."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def main(argv: list[str] | None = None) -> int:
    # Every command: a reader may leave any of them (`litelens demo | head -3`, `keys list | head -1`).
    return _reader_may_leave(lambda: _run(argv))


def _run(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="litelens", description="Observability for LiteLLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run a mixed LiteLLM workload against a fake provider and show what litelens recorded"
    )
    demo.add_argument("--calls", type=int, default=200, help="number of LiteLLM calls to make (default 200)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the workload's random choices")
    demo.add_argument(
        "--keep-running", action="store_true", help="leave the server (and its dashboard) up until Ctrl-C"
    )
    demo.add_argument("--db", default=None, help="store the demo's data here (default: a temporary SQLite)")
    demo.add_argument("--port", type=int, default=0, help="the demo server's port (default: a free one)")

    # These two hand every argument, --help included, to their own parser: a copy of it here showed
    # only --host and --port, hiding fake-provider's --set and receiver's --api-key.
    sub.add_parser(
        "fake-provider", help="run the fake OpenAI-compatible provider on loopback", add_help=False
    )
    sub.add_parser(
        "receiver", help="run a loopback receiver that prints the call records sent to it", add_help=False
    )

    serve = sub.add_parser("serve", help="run the collector: ingest, storage, query API")
    serve.add_argument("--host", default=None, help="address to bind (default 127.0.0.1; env LITELENS_HOST)")
    serve.add_argument(
        "--port", type=int, default=None, help="port (default 4318, the OTLP/HTTP port; env LITELENS_PORT)"
    )
    serve.add_argument("--db", default=None, help="sqlite:///path.db or postgresql://... (env LITELENS_DB)")
    serve.add_argument("--no-auth", action="store_true", help="accept requests without a key (loopback only)")
    serve.add_argument(
        "--retention",
        default=None,
        help="delete calls and spans older than this, e.g. 30d (env LITELENS_RETENTION)",
    )
    # uvicorn's names, checked here: one it does not know was a KeyError traceback after "serving on".
    serve.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="default info",
    )
    serve.add_argument(
        "--db-wait",
        default=None,
        help="at start, wait this long (e.g. 60s) for a database that is not answering yet (env LITELENS_DB_WAIT)",
    )
    serve.add_argument(
        "--ssl-certfile", default=None, help="serve HTTPS with this PEM certificate (chain) instead of HTTP"
    )
    serve.add_argument("--ssl-keyfile", default=None, help="with --ssl-certfile: its private key (PEM)")

    keys = sub.add_parser("keys", help="manage project API keys (talks to the database directly)")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("key", nargs="?", help="with revoke: the key to revoke")
    keys.add_argument(
        "--project",
        default=None,
        help="create: the project (default 'default'); list, revoke: only this project (default: all)",
    )
    keys.add_argument("--db", default=None, help="database URL (env LITELENS_DB)")

    export = sub.add_parser("export", help="download calls from a server as JSON lines or CSV")
    export.add_argument("--endpoint", default=None, help="server URL (env LITELENS_ENDPOINT)")
    export.add_argument("--api-key", default=None, help="project key (env LITELENS_API_KEY)")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl", help="default jsonl")
    export.add_argument("--since", default="24h", help="how far back, e.g. 1h, 7d (default 24h)")
    export.add_argument(
        "--filter", action="append", default=[], help="query filter name=value, e.g. model=gpt-4o"
    )
    export.add_argument("-o", "--output", default="-", help="file to write (default stdout)")

    doctor = sub.add_parser(
        "doctor", help="check that this configuration reaches a server that accepts its key"
    )
    doctor.add_argument("--endpoint", default=None, help="server URL (env LITELENS_ENDPOINT)")
    doctor.add_argument("--api-key", default=None, help="project key (env LITELENS_API_KEY)")

    tail = sub.add_parser("tail", help="print calls as they happen, from a JSONL sink or a server")
    source = tail.add_mutually_exclusive_group()
    source.add_argument(
        "--jsonl",
        metavar="PATH",
        help="follow a JsonlSink's file, across rotations ({pid} in it: every process's file)",
    )
    source.add_argument(
        "--server",
        "--endpoint",  # the name `export` and `doctor` give it
        dest="server",
        metavar="URL",
        help="poll a litelens server's query API (default: env LITELENS_ENDPOINT, when neither is given)",
    )
    tail.add_argument("--api-key", default=None, help="with --server: project key (env LITELENS_API_KEY)")
    tail.add_argument("--from-start", action="store_true", help="with --jsonl: print what is there first")
    tail.add_argument(
        "--since",
        type=_seconds,
        default=60.0,
        help="with --server: how far back, e.g. 90, 5m, 2h (default 60 s)",
    )
    tail.add_argument(
        "--interval",
        type=_seconds,
        default=None,
        help="seconds between polls (default 0.2 with --jsonl, 1 with --server)",
    )
    tail.add_argument("--color", choices=["auto", "always", "never"], default="auto")

    args, rest = parser.parse_known_args(argv)
    if args.command == "tail":
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from litelens.tail import run as run_tail

        # Where the callback sends is where a bare `tail` looks, as `export` and `doctor` do.
        server = args.server
        if server is None and args.jsonl is None:
            server = os.environ.get("LITELENS_ENDPOINT") or None
        return run_tail(
            args.jsonl,
            server,
            args.api_key,
            from_start=args.from_start,
            since_s=args.since,
            poll_s=args.interval,
            color={"auto": None, "always": True, "never": False}[args.color],
        )
    if args.command in ("serve", "keys", "export", "doctor"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        from litelens import server_cli

        return int(getattr(server_cli, args.command.replace("-", "_"))(args))
    if args.command == "demo":
        from litelens.demo import run_demo

        return run_demo(
            calls=args.calls, seed=args.seed, keep_running=args.keep_running, db=args.db, port=args.port
        )
    if args.command == "fake-provider":
        from litelens.testing.fake_provider import run_cli

        return run_cli(rest)
    if args.command == "receiver":
        from litelens.testing.receiver import run_cli as run_receiver

        return run_receiver(rest)
    parser.error(f"unknown command {args.command}")
    return 2


def _reader_may_leave(command: Callable[[], int]) -> int:
    """Run a printing command whose reader may close the pipe early (`litelens keys list | head -1`):
    done, quietly, like any Unix filter, not a BrokenPipeError traceback. stdout is flushed here, where
    that is caught, and then pointed away from the closed pipe so the interpreter's last flush is quiet."""
    try:
        status = command()
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return status


def _seconds(text: str) -> float:
    """A duration argument, as `export --since` and `serve --retention` take it: `90`, `5m`, `2h`."""
    from litelens.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("litelens: ")) from None


if __name__ == "__main__":
    sys.exit(main())
