"""The `litelens` command: `demo`, `fake-provider`, `receiver`, `stats`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="litelens", description="Observability for LiteLLM.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo", help="run a mixed LiteLLM workload against a fake provider and show what litelens recorded"
    )
    demo.add_argument("--calls", type=int, default=200, help="number of LiteLLM calls to make (default 200)")
    demo.add_argument("--seed", type=int, default=7, help="seed of the workload's random choices")

    fake = sub.add_parser("fake-provider", help="run the fake OpenAI-compatible provider on loopback")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=0)

    receiver = sub.add_parser(
        "receiver", help="run a loopback receiver that prints the call records sent to it"
    )
    receiver.add_argument("--host", default="127.0.0.1")
    receiver.add_argument("--port", type=int, default=4318)

    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from litelens.demo import run_demo

        return run_demo(calls=args.calls, seed=args.seed)
    if args.command == "fake-provider":
        from litelens.testing.fake_provider import run_cli

        return run_cli(["--host", args.host, "--port", str(args.port), *rest])
    if args.command == "receiver":
        from litelens.testing.receiver import run_cli as run_receiver

        return run_receiver(["--host", args.host, "--port", str(args.port), *rest])
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
