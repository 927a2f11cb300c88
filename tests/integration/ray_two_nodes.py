"""A Ray cluster of two nodes (one CPU each) on this machine, for tests: prints its address, then
runs until its standard input closes, and stops both nodes.

Start it with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 so that every node takes 127.0.0.1 as its
address and listens on loopback only, RAY_USAGE_STATS_ENABLED=0, and RAY_TMPDIR set to a short
folder of its own (Ray's sockets live there). `ray start` refuses a second node in that mode;
Ray's own test cluster does not.
"""

import sys

from ray.cluster_utils import Cluster


def main() -> None:
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        print(cluster.address, flush=True)
        sys.stdin.read()
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main()
