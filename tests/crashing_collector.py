"""A collector that SIGKILLs itself right after its first commit, before any ack: the worst moment to die.

Usage (from tests): python tests/crashing_collector.py CONFIG CLIENT_ID
"""

import os
import signal
import sys
import threading

from edge.datacenter.collector import Collector
from edge.datacenter.config import load_datacenter_config


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    collector = Collector(load_datacenter_config(sys.argv[1]), client_id=sys.argv[2], after_commit=die).start()
    print("subscribed" if collector.subscribed.wait(60) else "not subscribed within 60 s", flush=True)
    threading.Event().wait()
