"""The load side of the benchmarks: signed Twilio webhooks, a lean HTTP/1.1 load generator
(closed and open loops), and a relay in front of Redis that counts round trips."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlencode

from _common import ACCOUNT_SID, AUTH_TOKEN, BUSINESS_NUMBER, WEBHOOK_PATH

# --- signed Twilio webhooks ----------------------------------------------------------------------


def phone(series: int, n: int) -> str:
    """A valid Spanish mobile number: series 0 for load senders, 1 for the memory sample."""
    return f"+34{6 + series}0{n:07d}"


class Signer:
    """Builds complete HTTP/1.1 requests for Twilio's inbound-message webhook, signed as Twilio
    signs them. Signing is the client's cost: requests are built before any timing starts."""

    def __init__(self, public_url: str, run_tag: int) -> None:
        from twilio.request_validator import RequestValidator

        self.url = public_url + WEBHOOK_PATH
        self.validator = RequestValidator(AUTH_TOKEN)
        self.run_tag = run_tag & 0xFFFFFFFF
        self.serial = 0

    def request(self, sender: str, text: str) -> bytes:
        self.serial += 1
        params = {
            "MessageSid": f"SM{self.run_tag:08x}{self.serial:024x}",
            "AccountSid": ACCOUNT_SID,
            "From": sender,
            "To": BUSINESS_NUMBER,
            "Body": text,
            "NumMedia": "0",
            "NumSegments": "1",
            "ApiVersion": "2010-04-01",
        }
        signature = self.validator.compute_signature(self.url, params)
        body = urlencode(params).encode()
        head = (
            f"POST {WEBHOOK_PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: TwilioProxy/1.1\r\n"
            f"Content-Type: application/x-www-form-urlencoded\r\nX-Twilio-Signature: {signature}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def batch(self, count: int, senders: int, series: int = 0, text_len: int = 64) -> list[bytes]:
        """`count` messages spread round-robin over `senders` conversations."""
        out = []
        for _ in range(count):
            n = self.serial
            text = f"Hello, this is message {n} about my order; please call me back.".ljust(text_len, ".")
            out.append(self.request(phone(series, n % senders), text[:text_len]))
        return out


# --- load generation -----------------------------------------------------------------------------


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight. Much leaner per request than
    aiohttp's client, which on this class of machine saturates before the servers under test do."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).lower()
        at = head.find(b"\r\ncontent-length:")
        if at < 0:
            self._fail(RuntimeError("response without Content-Length"))
            return
        stop = head.find(b"\r\n", at + 2)
        total = end + 4 + int(head[at + 17:stop if stop >= 0 else None])
        if len(self.buf) < total:
            return
        status = int(self.buf[9:12])
        del self.buf[:total]
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionError("server closed the connection"))

    def _fail(self, exc: BaseException) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)

    async def send(self, request: bytes) -> int:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return await self.waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def _connect(port: int, count: int) -> list[_Conn]:
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(count):
        _, proto = await loop.create_connection(_Conn, "127.0.0.1", port)
        conns.append(proto)
    return conns


@dataclass
class RunResult:
    """One load phase against one server: statuses, wall time, latencies (ns)."""

    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies_ns: list[int] = field(default_factory=list)
    service_ns: list[int] = field(default_factory=list)  # open loop: from the actual send
    first_send: float = 0.0
    last_done: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # process name -> CPU % during the phase

    @property
    def ok(self) -> int:
        return sum(n for s, n in self.statuses.items() if 200 <= s < 300)

    @property
    def elapsed(self) -> float:
        return max(1e-9, self.last_done - self.first_send)

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed

    def p(self, q: float, service: bool = False) -> float:
        """Latency percentile in milliseconds (nearest rank)."""
        return percentile(self.service_ns if service else self.latencies_ns, q) / 1e6


def percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))])


Source = Callable[[], bytes | None]


def cycle(requests: Sequence[bytes]) -> Source:
    """Requests repeated forever (the baseline does not dedupe, so reuse costs it nothing)."""
    i = -1

    def next_request() -> bytes:
        nonlocal i
        i += 1
        return requests[i % len(requests)]

    return next_request


def once(requests: Sequence[bytes]) -> Source:
    it = iter(requests)
    return lambda: next(it, None)


async def closed_loop(port: int, source: Source, *, concurrency: int, seconds: float) -> RunResult:
    """Saturation: `concurrency` connections each send their next request as soon as the previous
    one is acked, until `seconds` pass or the source runs dry."""
    conns = await _connect(port, concurrency)
    result = RunResult()
    perf = time.perf_counter
    result.first_send = perf()
    deadline = result.first_send + seconds

    async def drive(conn: _Conn) -> None:
        while perf() < deadline:
            request = source()
            if request is None:
                return
            result.sent += 1
            start = time.perf_counter_ns()
            status = await conn.send(request)
            result.latencies_ns.append(time.perf_counter_ns() - start)
            result.statuses[status] += 1

    try:
        await _all(drive(c) for c in conns)
    finally:
        result.last_done = perf()
        for c in conns:
            c.close()
    return result


async def open_loop(port: int, source: Source, *, rate: float, count: int, concurrency: int,
                    give_up_after: float) -> RunResult:
    """Fixed offered rate: request k is due at start + k/rate whether or not earlier ones were
    acked. Latency counts from the due time (no coordinated omission), `service_ns` from the send."""
    conns = await _connect(port, concurrency)
    queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()
    result = RunResult()
    t0 = time.perf_counter_ns()
    result.first_send = t0 / 1e9
    interval = 1e9 / rate

    async def schedule() -> None:
        for k in range(count):
            request = source()
            if request is None:
                break
            due = t0 + int(k * interval)
            delay = due - time.perf_counter_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            queue.put_nowait((request, due))
        for _ in conns:
            queue.put_nowait(None)

    async def drive(conn: _Conn) -> None:
        while (item := await queue.get()) is not None:
            request, due = item
            result.sent += 1
            start = time.perf_counter_ns()
            status = await conn.send(request)
            done = time.perf_counter_ns()
            result.latencies_ns.append(done - due)
            result.service_ns.append(done - start)
            result.statuses[status] += 1

    try:
        async with asyncio.timeout(give_up_after):
            await _all([schedule(), *(drive(c) for c in conns)])
    finally:
        result.last_done = time.perf_counter()
        for c in conns:
            c.close()
    return result


async def _all(coros: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run coroutines together; if one fails or the caller is cancelled, cancel and reap the rest."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# --- a relay in front of Redis that counts round trips --------------------------------------------


class CountingRelay:
    """A TCP relay in front of Redis that counts the bursts of bytes clients send before waiting
    for an answer. A client that waits for each reply sends one burst per round trip (a pipeline
    is one burst), so with webhooks sent one at a time bursts are round trips. Each burst is
    labelled by its first command, which shows what the round trips are."""

    def __init__(self, redis_port: int) -> None:
        self.redis_port = redis_port
        self.bursts: Counter[str] = Counter()
        self.commands: Counter[str] = Counter()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.redis_port)
        for coro in (self._pump(reader, up_writer, count=True), self._pump(up_reader, writer, count=False)):
            task = asyncio.create_task(coro)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool) -> None:
        parser = _RespCommands()
        try:
            while data := await reader.read(1 << 16):
                if count:
                    names = parser.feed(data)
                    self.bursts[names[0] if names else "(continued)"] += 1
                    self.commands.update(names)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


class _RespCommands:
    """Splits a client's byte stream into RESP commands and names them ("EVALSHA", "SCRIPT EXISTS")."""

    SUBCOMMANDS = frozenset({"SCRIPT", "CLIENT", "XGROUP", "XINFO", "CONFIG", "FUNCTION"})

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[str]:
        self.buf += data
        names: list[str] = []
        pos = 0
        while (parsed := self._command(pos)) is not None:
            name, pos = parsed
            names.append(name)
        del self.buf[:pos]
        return names

    def _command(self, pos: int) -> tuple[str, int] | None:
        buf = self.buf
        end = buf.find(b"\r\n", pos)
        if end < 0:
            return None
        if buf[pos:pos + 1] != b"*":  # an inline command
            return bytes(buf[pos:end]).split(b" ", 1)[0].upper().decode(errors="replace"), end + 2
        args: list[bytes] = []
        count = int(buf[pos + 1:end])
        pos = end + 2
        for _ in range(count):
            end = buf.find(b"\r\n", pos)
            if end < 0:
                return None
            start = end + 2
            stop = start + int(buf[pos + 1:end])
            if stop + 2 > len(buf):
                return None
            if len(args) < 2:
                args.append(bytes(buf[start:stop]))
            pos = stop + 2
        name = args[0].upper().decode(errors="replace") if args else "?"
        if name in self.SUBCOMMANDS and len(args) > 1:
            name += " " + args[1].upper().decode(errors="replace")
        return name, pos


async def commandstats(client: Any) -> Counter[str]:
    """Calls per command since the server started (INFO commandstats)."""
    info = await client.info("commandstats")
    return Counter({k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()})
