"""Benchmark (prints, never asserts): a rolling restart under load behind HAProxy.

deploy/compose/ as users run it (three replicas of the CPU image and Debian's HAProxy, on the
host's network, started from compose.yaml's own settings; no `docker compose` needed), then
`--clients` clients send schema-constrained /prompt requests and streamed /v1/chat/completions
through HAProxy while deploy/compose/roll.sh restarts the replicas one at a time, round after
round until the requests are done. Prints the failed requests, truncated streams, and
throughput and latency steady vs during the rolls vs after them. The e2e test
tests/python/mentator_e2e/test_rolling_restart.py runs the same and asserts that nothing failed.

    ./pants package docker:mentator-cpu deploy/compose:haproxy
    ./pants run bench/rolling_restart.py -- [--clients 8] [--min-requests 300] [--steady 60]
                                            [--image IMAGE] [--haproxy-image IMAGE]
Takes the host ports 19777, 8404 and 19781..19783 while it runs.
"""

from __future__ import annotations

import argparse
import os
import time

import docker
from mentator_e2e.rolling import ComposeStack, report_lines, roll_under_load, wait_all_up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--min-requests", type=int, default=300)
    parser.add_argument("--steady", type=int, default=60, help="requests before the first roll")
    parser.add_argument("--after", type=int, default=16, help="requests after the last roll")
    parser.add_argument("--image", default="mentator-llm-service-cpu:latest")
    parser.add_argument("--haproxy-image", default="mentator-haproxy:latest")
    args = parser.parse_args()
    client = docker.from_env(timeout=120)
    env = {"MENTATOR_IMAGE": args.image, "MENTATOR_HAPROXY_IMAGE": args.haproxy_image}
    with ComposeStack.up(client, env, f"mentator-roll-bench-{os.getpid()}") as stack:
        began = time.monotonic()
        took = wait_all_up(stack, 300)
        print(f"stack up: every replica UP in HAProxy after {took:.1f} s")
        run = roll_under_load(
            stack,
            clients=args.clients,
            steady_requests=args.steady,
            after_requests=args.after,
            min_requests=args.min_requests,
        )
        for line in report_lines(run):
            print(line)
        print("--- roll.sh ---")
        print(run.roll_output.rstrip())
        print(f"whole run {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
