"""A child process of `omnigateway serve --processes N` (gateway.supervisor): one role.

    python -m gateway.child web|ingest|dispatch [--config PATH]

Before anything else it ties its life to the supervisor's: the kernel sends it SIGTERM when the
supervisor dies (Linux's PR_SET_PDEATHSIG), and a thread watching the supervisor's pipe does the
same on any system once the pipe's other end closes. SIGTERM makes it drain like any gateway
process, so a supervisor killed with SIGKILL leaves no orphan holding the port or a lease.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1


def _die_with_supervisor() -> None:
    supervisor = int(os.environ.get("OG_SUPERVISOR_PID", "0") or 0)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if supervisor and os.getppid() != supervisor:
        os._exit(0)  # it died before we could ask to be told
    fd = int(os.environ.get("OG_SUPERVISOR_FD", "-1") or -1)
    if fd < 0:
        return

    def watch() -> None:
        with contextlib.suppress(OSError):
            while os.read(fd, 1):
                pass
        os.kill(os.getpid(), signal.SIGTERM)  # EOF: the supervisor is gone

    threading.Thread(target=watch, name="supervisor-lifeline", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    _die_with_supervisor()
    # A reload (SIGHUP) that arrives before the loop handles it must not end the process.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="python -m gateway.child")
    parser.add_argument("role", choices=("web", "ingest", "dispatch"))
    parser.add_argument("--config", default=None)
    args = parser.parse_args(argv)

    from gateway.config import ConfigError, load_config
    from gateway.server import run_web, work

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error:\n{exc}", file=sys.stderr)
        return 2
    assert config.gateway.redis_url is not None  # the supervisor resolved it
    if args.role == "web":
        return run_web(config, config.gateway.redis_url)
    return work(config, roles={args.role}, redis_url=config.gateway.redis_url)


if __name__ == "__main__":
    sys.exit(main())
