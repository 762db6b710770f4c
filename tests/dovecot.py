"""A throwaway Dovecot IMAP server for tests: Debian's dovecot-imapd, run as a child process.

Everything lives under one temp dir: the config, base_dir (sockets, pids), state_dir, the log and
the test users' maildirs. It listens on 127.0.0.1 on a free port, without TLS, and allows
plaintext LOGIN there; any user name logs in with the server's one password (a static passdb), so
a new name is a new, empty mailbox. Nothing of the machine's Dovecot (/etc/dovecot, /run/dovecot,
port 143) is read or touched.

Who runs what:
- as root (CI containers), the master runs as root, as Dovecot expects, and drops to `nobody`
  for mail access and for its login and internal processes: Dovecot refuses mail access for
  UIDs below first_valid_uid, and root mail access is a bad idea anyway; the mail dir is chowned
  to that user.
- as anyone else, every process runs as the current user (Dovecot supports this once the login
  and internal users are that user and the services that chroot by default do not).

Each test gets its own user, so mailboxes never leak between tests while one server serves the
session; tests that restart or reconfigure the server start their own with `DovecotServer`.
"""

from __future__ import annotations

import contextlib
import grp
import imaplib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from gateway.testing import free_port

# Without IDLE (the rest is what this Dovecot announces by default after login): lets a test prove
# that the connector falls back to polling on servers that do not offer IDLE.
CAPABILITIES_WITHOUT_IDLE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
    "LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE SAVEDATE LITERAL+ "
    "NOTIFY"
)


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.path.exists(p)), None
    )


def require_dovecot() -> str:
    """The dovecot binary; skips the test where it is missing, but fails in CI, which installs it."""
    binary = dovecot_binary()
    if binary is None:
        reason = "Dovecot is not installed (Debian: apt-get install dovecot-imapd; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI must run the IMAP tests, not skip them", pytrace=False)
        pytest.skip(reason)
    return binary


@dataclass
class Mailbox:
    """One test user's mailbox on a running server, with the helpers tests need."""

    server: DovecotServer
    user: str
    password: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def connect(self) -> imaplib.IMAP4:
        imap = imaplib.IMAP4(self.host, self.port, timeout=10)
        imap.login(self.user, self.password)
        return imap

    def append(self, raw: bytes, folder: str = "INBOX", *, arrived: datetime | None = None) -> int:
        """APPEND a raw RFC 5322 message; returns its UID (from Dovecot's APPENDUID). `arrived`
        sets its INTERNALDATE, as for mail copied in from an older mailbox."""
        imap = self.connect()
        try:
            when = imaplib.Time2Internaldate(arrived) if arrived else None
            typ, data = imap.append(folder, None, when, raw)
            assert typ == "OK", data
            match = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert match, data
            return int(match.group(1))
        finally:
            imap.logout()

    def create_folder(self, folder: str) -> None:
        imap = self.connect()
        try:
            imap.create(folder)
        finally:
            imap.logout()

    def uids(self, folder: str = "INBOX") -> list[int]:
        """UIDs present in a folder (expunged ones excluded)."""
        imap = self.connect()
        try:
            typ, _ = imap.select(folder, readonly=True)
            if typ != "OK":
                return []
            typ, data = imap.uid("SEARCH", "ALL")
            assert typ == "OK", data
            return [int(n) for n in (data[0] or b"").split()]
        finally:
            imap.logout()

    def flags(self, uid: int, folder: str = "INBOX") -> str:
        imap = self.connect()
        try:
            imap.select(folder, readonly=True)
            typ, data = imap.uid("FETCH", str(uid), "(FLAGS)")
            assert typ == "OK", data
            return (data[0] or b"").decode() if isinstance(data[0], bytes) else repr(data[0])
        finally:
            imap.logout()

    def uidvalidity(self, folder: str = "INBOX") -> int:
        out = self.server.doveadm("mailbox", "status", "-u", self.user, "uidvalidity", folder)
        return int(out.split("=", 1)[1])

    def set_uidvalidity(self, value: int, folder: str = "INBOX") -> None:
        """Change the folder's UIDVALIDITY, as a restored or migrated mailbox would. Dovecot then
        drops sessions that have the folder selected ("IMAP session state is inconsistent")."""
        self.server.doveadm("mailbox", "update", "-u", self.user, "--uid-validity", str(value), folder)

    def kick(self) -> None:
        """Drop this user's IMAP connections server-side (Dovecot says BYE and closes)."""
        # doveadm exits 68 (EX_NOUSER) when the user had no connection: nothing to drop.
        self.server.doveadm("kick", self.user, ok_codes=(0, 68))

    def logged_in_sessions(self) -> int:
        """How many IMAP sessions this user has open right now."""
        out = self.server.doveadm("who", "-1", self.user, check=False)
        return sum(1 for line in out.splitlines() if line.split() and line.split()[0] == self.user)


@dataclass
class DovecotServer:
    """A private Dovecot on a free port. `start()`, `stop()`, and `start()` again on the same port."""

    capabilities: str | None = None  # imap_capability override, e.g. CAPABILITIES_WITHOUT_IDLE
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="og-dovecot-")))
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.binary = require_dovecot()
        if os.geteuid() == 0:
            # Mail access as root is refused by Dovecot (first_valid_uid); use nobody instead.
            entry = pwd.getpwnam("nobody")
            self.mail_uid, self.mail_gid = entry.pw_uid, entry.pw_gid
        else:
            self.mail_uid, self.mail_gid = os.getuid(), os.getgid()
        self.mail_user = pwd.getpwuid(self.mail_uid).pw_name
        self.mail_group = grp.getgrgid(self.mail_gid).gr_name
        self.conf = self.root / "dovecot.conf"
        self.password = uuid.uuid4().hex
        self.log = self.root / "dovecot.log"
        for sub in ("run", "state", "mail"):
            (self.root / sub).mkdir(exist_ok=True)
        # mkdtemp makes the dir 0700; the unprivileged mail processes must reach their maildirs.
        self.root.chmod(0o755)
        os.chown(self.root / "mail", self.mail_uid, self.mail_gid)
        self.conf.write_text(self._config())

    def _config(self) -> str:
        r = self.root
        capability = f"imap_capability = {self.capabilities}\n" if self.capabilities else ""
        return f"""\
# Written by tests/dovecot.py for one test session; see that file.
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
protocols = imap
listen = {self.host}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
mail_fsync = never
first_valid_uid = 1
default_login_user = {self.mail_user}
default_internal_user = {self.mail_user}
default_internal_group = {self.mail_group}
{capability}
# IDLE learns of new mail through inotify; where a busy machine has run out of inotify instances,
# Dovecot falls back to looking every 30 s, longer than any test waits. Look every second instead.
mailbox_idle_check_interval = 1 secs
# Any user name logs in with the server's one password: a test gets a fresh, empty mailbox just
# by choosing a new name, with no user file to keep in step (a passwd-file appended to twice
# within a second was not re-read in time).
passdb {{
  driver = static
  args = password={self.password}
}}
userdb {{
  driver = static
  args = uid={self.mail_uid} gid={self.mail_gid} home={r}/mail/%u allow_all_users=yes
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = {self.host}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# Chroots need root; off so that the same config runs unprivileged too.
service anvil {{
  chroot =
}}
service ipc {{
  chroot =
}}
"""

    def start(self, timeout: float = 10.0) -> DovecotServer:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        stderr = (self.root / "stderr.log").open("ab")
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)], stdout=stderr, stderr=stderr, stdin=subprocess.DEVNULL,
            # Its own process group, so that stop() can end every process of this server.
            start_new_session=True,
        )
        stderr.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5) as s:
                s.settimeout(2)
                if s.recv(64).startswith(b"* OK"):
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"Dovecot did not start on port {self.port}:\n{self.diagnostics()}")

    def stop(self) -> None:
        """Stop the server as a crash or a restart would: every connection is dropped."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        # A stopped master leaves its imap processes serving the connections they have (until
        # they notice, much later): end them too, or clients would not see the server go away.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def diagnostics(self) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace")[-4000:])
        return "\n".join(parts)

    def doveadm(self, *args: str, check: bool = True, ok_codes: tuple[int, ...] = (0,)) -> str:
        doveadm = shutil.which("doveadm") or str(Path(self.binary).with_name("doveadm"))
        if not os.path.exists(doveadm):
            doveadm = "/usr/bin/doveadm"
        done = subprocess.run([doveadm, "-c", str(self.conf), *args], capture_output=True, timeout=20)
        if check and done.returncode not in ok_codes:
            raise RuntimeError(f"doveadm {' '.join(args)} failed: {done.stderr.decode(errors='replace')}")
        return done.stdout.decode(errors="replace")

    def add_user(self, user: str | None = None) -> Mailbox:
        """A new user, whose mailbox Dovecot creates empty at its first login."""
        return Mailbox(self, user or f"u{uuid.uuid4().hex[:10]}", self.password)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    """One Dovecot for the session (IDLE offered); tests take users from it via `imap_mailbox`."""
    server = DovecotServer()
    server.start()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture
def imap_mailbox(dovecot: DovecotServer) -> Mailbox:
    """A fresh user (empty INBOX) on the session's Dovecot."""
    return dovecot.add_user()


@pytest.fixture
def dovecot_factory() -> Iterator[type[DovecotServer]]:
    """For tests that need their own server (restarts, other capabilities): every server made
    through it is stopped and removed after the test."""
    made: list[DovecotServer] = []

    class _Tracked(DovecotServer):
        def __post_init__(self) -> None:
            super().__post_init__()
            made.append(self)

    try:
        yield _Tracked
    finally:
        for server in made:
            server.remove()
