"""A local Ray cluster for the tests: started once per session on 127.0.0.1, then stopped.

    python -m tests.ray_cluster      # prints "READY <gcs address>", runs until stdin closes

It runs in a process of its own (started with PYTHONPATH covering the repository, so Ray
workers can import the tests' scripted backends) and is stopped through that process, never
with `ray stop`, which would end every Ray process of the machine. Small on purpose: 2 CPUs,
a 100 MB object store, no dashboard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    logging.getLogger("ray._private.authentication.authentication_token_setup"
                      ).setLevel(logging.ERROR)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 << 20,
             _node_ip_address="127.0.0.1", logging_level=logging.WARNING, log_to_driver=False)
    port = ray.get_runtime_context().gcs_address.rsplit(":", 1)[1]
    print("READY", f"127.0.0.1:{port}", flush=True)
    sys.stdin.read()  # until the test session closes our stdin
    ray.shutdown()


@contextlib.contextmanager
def ray_cluster() -> Iterator[dict[str, str]]:
    """Start the cluster; yields the environment a driver joins it with: RAY_ADDRESS, token
    authentication (Ray's default for a cluster it starts; the token is in ~/.ray), and one
    node on loopback."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # one node, loopback (executors.ray.connect_ray)
    proc = subprocess.Popen([sys.executable, "-m", "tests.ray_cluster"], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"the test Ray cluster did not start: {line}")
        yield {"RAY_ADDRESS": line[1], "RAY_AUTH_MODE": "token",
               "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
