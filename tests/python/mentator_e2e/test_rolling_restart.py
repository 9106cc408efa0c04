"""A rolling restart under load behind a real load balancer (issue 23, item 4).

deploy/compose/ as users run it: three replicas of the CPU image and HAProxy from Debian's
package (each in a container of its own, on the host's network, started from compose.yaml's own
settings). Eight clients send schema-constrained /prompt requests and streamed
/v1/chat/completions through HAProxy while deploy/compose/roll.sh stops (`docker stop`: SIGTERM,
30 s before SIGKILL) and restarts the replicas one at a time. Not one request may fail and not
one stream may end without its finish and [DONE]. The numbers (throughput and latency during the
roll vs steady state) are printed; bench/rolling_restart.py prints the same for the README.
"""

from __future__ import annotations

import os

import docker
import pytest
from mentator_e2e.rolling import ComposeStack, report_lines, roll_under_load, wait_all_up

pytestmark = pytest.mark.e2e

MIN_REQUESTS = 300
CLIENTS = 8


def test_a_rolling_restart_under_load_fails_no_request(
    docker_client: docker.DockerClient, cpu_image: str, haproxy_image: str
) -> None:
    env = {"MENTATOR_IMAGE": cpu_image, "MENTATOR_HAPROXY_IMAGE": haproxy_image}
    with ComposeStack.up(docker_client, env, f"mentator-roll-{os.getpid()}") as stack:
        replicas = stack.replicas()
        assert len(replicas) == 3, replicas
        wait_all_up(stack, 300)
        started = stack.started_at()
        run = roll_under_load(stack, clients=CLIENTS, min_requests=MIN_REQUESTS)
        report = "\n".join(report_lines(run))
        print(report)
        context = f"{report}\n--- roll.sh ---\n{run.roll_output}\n{stack.logs()}"
        assert run.roll_rc == 0, f"roll.sh failed\n{context}"
        restarted = stack.started_at()
        assert all(restarted[n] != started[n] for n in replicas), f"{started} {restarted}"
        assert len(run.outcomes) >= MIN_REQUESTS, context
        roll_phase, _ = run.phase("roll")
        assert len(roll_phase) >= 2 * CLIENTS, f"the load hardly overlapped the roll\n{context}"
        # Each round stopped every replica once, and the drains had requests to finish.
        assert len(run.in_flight_at_sigterm) == 3 * run.rounds, context
        assert sum(run.in_flight_at_sigterm) > 0, context
        assert not run.failed(), context
        assert not any(o.truncated for o in run.outcomes), context
