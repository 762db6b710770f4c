"""The embedded Valkey: a real server under the data directory, shared by processes, kept on disk."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap
from pathlib import Path

import redis

from gateway.config import Config, GatewaySettings
from gateway.embedded import EmbeddedValkey, resolve_redis_url


def answers(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except redis.ConnectionError:
        return False


# Child processes log to stderr (as the CLI does), so stdout carries only what the script prints.
PRELUDE = "from gateway.logging import configure_logging; configure_logging('warning')\n"


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout.strip()


def test_data_survives_a_restart(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        assert server.started_here
        first_url = server.url
        with redis.Redis.from_url(first_url) as client:
            client.set("greeting", "hola")
            client.rpush("timeline", "a", "b")
    assert not answers(first_url), "stop() must shut the server down"
    assert (tmp_path / "valkey" / "appendonlydir").is_dir()

    with EmbeddedValkey(tmp_path) as server, redis.Redis.from_url(server.url) as client:
        assert client.get("greeting") == b"hola"
        assert client.lrange("timeline", 0, -1) == [b"a", b"b"]


def test_a_second_user_of_the_data_dir_reuses_the_server_and_the_last_one_stops_it(tmp_path: Path) -> None:
    first = EmbeddedValkey(tmp_path)
    url = first.start()
    second = EmbeddedValkey(tmp_path)
    try:
        assert second.start() == url
        assert not second.started_here
        first.stop()
        assert answers(url), "another user still holds the server: it must keep running"
    finally:
        second.stop()
        first.stop()
    assert not answers(url)


def test_another_process_finds_the_same_server_and_leaves_it_running(tmp_path: Path) -> None:
    with EmbeddedValkey(tmp_path) as server:
        other = run_python(f"""
            from gateway.embedded import EmbeddedValkey
            e = EmbeddedValkey({str(tmp_path)!r})
            print(e.start(), e.started_here)
            e.stop()
        """)
        assert other == f"{server.url} False"
        assert answers(server.url)


def test_a_server_orphaned_by_a_killed_process_is_adopted_then_stopped(tmp_path: Path) -> None:
    # The process dies without stop(), as under SIGKILL: its Valkey keeps running.
    orphan_url = run_python(f"""
        import os
        from gateway.embedded import EmbeddedValkey
        print(EmbeddedValkey({str(tmp_path)!r}).start(), flush=True)
        os._exit(0)
    """)
    assert answers(orphan_url)
    adopter = EmbeddedValkey(tmp_path)
    try:
        assert adopter.start() == orphan_url and not adopter.started_here
    finally:
        adopter.stop()
        if answers(orphan_url):  # never leak a server past a failed test
            with contextlib.suppress(redis.ConnectionError), redis.Redis.from_url(orphan_url) as client:
                client.shutdown(nosave=True)
    assert not answers(orphan_url)


def test_a_stale_port_file_is_never_trusted(tmp_path: Path) -> None:
    # The port now belongs to an unrelated server (another data dir): it must not be reused.
    with EmbeddedValkey(tmp_path / "elsewhere") as unrelated:
        (tmp_path / "valkey").mkdir()
        (tmp_path / "valkey" / "port").write_text(f"{unrelated.port}\n")
        with EmbeddedValkey(tmp_path) as ours:
            assert ours.started_here and ours.port != unrelated.port
        assert answers(unrelated.url)


def test_resolve_prefers_the_configured_redis_url(tmp_path: Path) -> None:
    configured = Config(gateway=GatewaySettings(redis_url="redis://127.0.0.1:6390/0", data_dir=str(tmp_path)))
    assert resolve_redis_url(configured) == ("redis://127.0.0.1:6390/0", None)
    assert not (tmp_path / "valkey").exists()


def test_resolve_starts_the_embedded_server_under_data_dir(tmp_path: Path) -> None:
    url, embedded = resolve_redis_url(Config(gateway=GatewaySettings(data_dir=str(tmp_path / "var"))))
    try:
        assert embedded is not None and answers(url)
        assert (tmp_path / "var" / "valkey" / "port").read_text().strip() == str(embedded.port)
    finally:
        assert embedded is not None
        embedded.stop()


def test_concurrent_starts_make_one_server(tmp_path: Path) -> None:
    script = f"""
        import time
        from gateway.embedded import EmbeddedValkey
        e = EmbeddedValkey({str(tmp_path)!r})
        print(e.start(), flush=True)
        time.sleep(1.5)  # overlap with the others before leaving
        e.stop()
    """
    procs = [subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(script)], stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1, urls
    assert not answers(urls.pop()), "the last process out stops it"
