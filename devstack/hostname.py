"""``[core] hostname_callable`` for stacks that run several workers on one machine: each worker
process names itself with DBTW_WORKER_NAME, so a task instance's ``hostname`` says which ran it."""

from __future__ import annotations

import os
import socket


def worker_name() -> str:
    return os.environ.get("DBTW_WORKER_NAME") or socket.getfqdn()
