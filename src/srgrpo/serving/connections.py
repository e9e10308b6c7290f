"""The reward server's connection side: no connection is held forever, unauthenticated clients
cannot take every connection slot, and a client that sends a whole rejected body still reads its
answer. A small subclass of uvicorn's h11 protocol plus a shared `ConnectionGuard`; no patching of
uvicorn. Everything here runs on the server's event loop thread (no locks).

Mechanisms, and their limits:

- **Every request head is timed** (`read_timeout`). uvicorn times an idle keep-alive connection,
  but cancels that timer as soon as a byte arrives, and times nothing while a head is incomplete.
  Here a timer starts when a connection opens (its first head) and whenever the first bytes of a
  later head arrive (h11 is back in IDLE with bytes buffered); it stops when h11 produces the
  request. A head not complete `read_timeout` after it began is closed, however slowly its bytes
  trickle in. An idle keep-alive connection with nothing sent is left to uvicorn's
  `timeout_keep_alive`. h11 itself refuses a head over 16 KiB (400).
- **Every request body is timed** (`read_timeout` from the end of its head). `/get_reward` answers
  408 on its own timer; this one is the backstop for a body that nobody reads (a 401, a /health
  with a body, a body trickling after the answer): while the application has not started its answer
  it gets `BODY_GRACE_S` more to do so, then the connection is closed.
- **Connection cap, with room kept for key holders** (`ConnectionGuard.admit`). A request on a
  connection beyond `max_connections` open ones gets 503 and the connection closes. When an API key
  is set, a request carrying the key first closes idle connections that have never carried it
  (oldest first: "idle" means no request being answered, which includes a stalled head and a body
  nobody reads) to make room; an accepted connection beyond the cap does the same. Requests without
  the key get 503 while more than `max_unauthenticated` connections are held by keyless requests.
  Without an API key (loopback only) every client counts as authenticated: nothing is evicted and
  the timers alone bound how long a slot is held. Limit: a brand-new connection is "unknown" until
  its head arrives, so a flood of connections may evict a key holder's connection in the instant
  between its connect and its first head (the oldest idle ones go first, so it is rarely the one).
- **Lingering close** (`_LingeringTransport`). When an answer ends the connection while the
  request body is still arriving (413, 503, 408), closing at once would make the kernel send a
  reset, and a client that writes its whole body before reading loses the answer. Instead the
  server half-closes (FIN after the answer), reads and discards up to `drain_bytes` more for at
  most `read_timeout` (and no longer than `LINGER_IDLE_S` without a byte), then closes; the client
  reads the answer, then hangs up. A body longer than that still gets a reset. No discarded byte
  is kept in memory.
- **Reading is reserved** (`InflightBytes`, shared with the application's body charges). Before
  its request is charged, a connection may hold up to `READ_RESERVATION_BYTES` in the stack's
  buffers (asyncio reads 256 KiB at a time; uvicorn queues up to 64 KiB of body before it pauses
  reading), so a connection reads only while it holds that much of the in-flight bound: it takes
  it when it opens and again after each answer; its request's first charge takes it over. A
  connection that finds no room waits with reading paused (its head timer runs: one that waits
  `read_timeout` is closed) and is resumed, oldest first, when bytes are given back. So request
  bytes in memory stay under the bound however many connections write at once; with a small bound
  and many idle connections, new ones wait (`srgrpo_connections_waiting`). Limit: between an
  answer's release and its last byte written, the connection reads on without a reservation (one
  read at most).
- Not covered: a client that never reads its answer holds the connection while the kernel's send
  buffer holds the answer (the answers are small: one float per text); TLS is not terminated here.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import math
import time

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

logger = logging.getLogger("srgrpo.serve")

# After the body timer expires, an application that has not started its answer (e.g. /get_reward,
# whose own timer answers 408) gets this long to do so before the connection is closed.
BODY_GRACE_S = 1.0
# A lingering close ends when the client has sent nothing for this long (or after read_timeout in all).
LINGER_IDLE_S = 2.0
# What a connection may hold in the HTTP stack's buffers before its request is charged: one asyncio
# read (256 KiB) and the body uvicorn queues before it pauses reading (64 KiB).
READ_RESERVATION_BYTES = 256 * 1024 + 64 * 1024


class InflightBytes:
    """The bytes of request bodies in memory, against a limit: `used`, what requests are charged
    (see srgrpo.serving.server: a body of Content-Length L is charged 4 L + min(L, 512 KiB) + 16 KiB
    on arrival, the rest of its parse cost once it has arrived, then its parsed texts' size until it
    is answered), and `reserved`, the read
    reservations of connections whose request is not charged yet (see the module docstring).
    Runs on the event loop thread only."""

    def __init__(self, limit: int, gauge=None, reserved_gauge=None):
        self.limit = limit
        self.used = 0
        self.reserved = 0
        self._gauge, self._reserved_gauge = gauge, reserved_gauge
        self.on_room = None  # called when bytes are given back (the guard resumes waiting connections)

    def fits(self, n: int) -> bool:
        return self.used + self.reserved + n <= self.limit

    def take(self, n: int, force: bool = False, absorb: int = 0) -> bool:
        """Charge `n` bytes (negative: give back); `absorb` bytes of a reservation become part of it."""
        if not force and n > 0 and not self.fits(n - absorb):
            return False
        self.used += n
        self.reserved -= absorb
        self._publish()
        if n - absorb < 0 and self.on_room is not None:
            self.on_room()
        return True

    def give(self, n: int) -> None:
        self.take(-n, force=True)

    def reserve(self, n: int) -> bool:
        if not self.fits(n):
            return False
        self.reserved += n
        self._publish()
        return True

    def unreserve(self, n: int) -> None:
        self.reserved -= n
        self._publish()
        if n > 0 and self.on_room is not None:
            self.on_room()

    def _publish(self) -> None:
        if self._gauge is not None:
            self._gauge.set(self.used)
        if self._reserved_gauge is not None:
            self._reserved_gauge.set(self.reserved)

_CONNECTION: contextvars.ContextVar["GuardedH11Protocol | None"] = contextvars.ContextVar(
    "srgrpo_connection", default=None)


def current_connection() -> "GuardedH11Protocol | None":
    """The connection whose request the calling ASGI task answers (None outside `GuardedH11Protocol`:
    uvicorn creates each request's task inside `handle_events`, which sets this, and the task keeps a
    copy of the context)."""
    return _CONNECTION.get()


class ConnectionGuard:
    """Shared by every connection of one server: the open connections (oldest first), the policy
    that admits a request, and counts for /metrics."""

    def __init__(self, *, read_timeout: float, max_connections: int, max_unauthenticated: int,
                 keyed: bool, drain_bytes: int, metrics=None, budget: InflightBytes | None = None):
        self.read_timeout = read_timeout
        self.budget = budget  # None: connections read without reservations (no in-flight bound)
        self.waiting: dict[GuardedH11Protocol, None] = {}  # paused until a read reservation fits, oldest first
        if budget is not None:
            budget.on_room = self.resume_waiting
        self.max_connections = max_connections
        self.max_unauthenticated = max_unauthenticated
        self.keyed = keyed
        self.drain_bytes = drain_bytes
        self.metrics = metrics
        self.connections: dict[GuardedH11Protocol, None] = {}  # insertion order: oldest first
        self.unauthenticated: set[GuardedH11Protocol] = set()  # whose latest request lacked the key
        self.evicted = 0
        self._logged = -math.inf

    def count_closed(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.connections_closed.labels(reason=reason).inc()

    def opened(self, conn: "GuardedH11Protocol") -> None:
        self.connections[conn] = None
        if len(self.connections) > self.max_connections:
            self._evict(self._open_count() - self.max_connections, spare=conn)
        self.reserve_read(conn)

    def lost(self, conn: "GuardedH11Protocol") -> None:
        self.connections.pop(conn, None)
        self.unauthenticated.discard(conn)
        self.waiting.pop(conn, None)
        self.release_read(conn)

    # ------------------------------------------------------------------ read reservations
    def reserve_read(self, conn: "GuardedH11Protocol") -> None:
        """Give `conn` its read reservation, or pause its reading until one fits."""
        if self.budget is None or conn.read_reservation:
            return
        if not self.waiting and self.budget.reserve(READ_RESERVATION_BYTES):
            conn.read_reservation = READ_RESERVATION_BYTES
            return
        conn.pause_for_room()
        self.waiting[conn] = None

    def release_read(self, conn: "GuardedH11Protocol") -> None:
        if conn.read_reservation and self.budget is not None:
            held, conn.read_reservation = conn.read_reservation, 0
            self.budget.unreserve(held)

    def resume_waiting(self) -> None:
        while self.waiting:
            conn = next(iter(self.waiting))
            if not conn.closed() and not self.budget.reserve(READ_RESERVATION_BYTES):
                return
            del self.waiting[conn]
            if not conn.closed():
                conn.read_reservation = READ_RESERVATION_BYTES
                conn.resume_after_room()

    def _open_count(self) -> int:
        if len(self.connections) <= self.max_connections:
            return len(self.connections)  # the common case, O(1); closing ones counted as open
        return sum(1 for c in self.connections if not c.transport.is_closing())

    def _evict(self, n: int, spare: "GuardedH11Protocol | None" = None) -> int:
        """Close up to `n` idle connections that never carried the key, oldest first."""
        if not self.keyed or n <= 0:
            return 0
        victims = list(itertools.islice(
            (c for c in self.connections if c is not spare and not c.authenticated and c.idle()), n))
        for c in victims:
            c.close_now("evicted")
        self.evicted += len(victims)
        now = time.monotonic()
        if victims and now - self._logged >= 10:  # at most one line per 10 s under a flood
            self._logged = now
            logger.warning("connection cap (%d) reached: %d idle connection(s) without the API key closed so far",
                           self.max_connections, self.evicted)
        return len(victims)

    def admit(self, conn: "GuardedH11Protocol", authorized: bool) -> str | None:
        """None to serve the request, or why it gets 503 (then the connection closes)."""
        authorized = authorized or not self.keyed
        conn.authenticated = conn.authenticated or authorized  # once it carried the key, never evicted
        if authorized:
            self.unauthenticated.discard(conn)
        else:
            self.unauthenticated.add(conn)
        over = self._open_count() - self.max_connections
        if over > 0 and authorized:
            over -= self._evict(over, spare=conn)
        if over > 0:
            return "connection_cap"
        if not authorized and len(self.unauthenticated) > self.max_unauthenticated:
            return "unauthenticated_share"
        return None


class _LingeringTransport:
    """The connection's transport as uvicorn sees it: `close()` while the request body is still
    arriving becomes a lingering close (see the module docstring); all else goes to the real one."""

    def __init__(self, transport: asyncio.Transport, conn: "GuardedH11Protocol"):
        self._transport = transport
        self._conn = conn
        self.lingering = False

    def __getattr__(self, name):
        return getattr(self._transport, name)

    def is_closing(self) -> bool:
        return self.lingering or self._transport.is_closing()

    def close(self) -> None:
        if self.lingering or self._transport.is_closing():
            return
        if self._conn.body_unread() and self._transport.can_write_eof():
            self.lingering = True
            self._conn.start_draining()
            return
        self._transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with per-head and per-body timers, admission through a
    `ConnectionGuard` and lingering close. Build one class per server with `guarded_protocol`."""

    guard: ConnectionGuard  # set by guarded_protocol

    def connection_made(self, transport):
        super().connection_made(transport)
        self._raw_transport = transport
        self.transport = _LingeringTransport(transport, self)
        self.authenticated = False
        self._head_timer = self._body_timer = self._drain_timer = self._linger_idle = None
        self._body_grace_used = False
        self._draining = False
        self._drained = 0
        self._lost = False
        self.read_reservation = 0  # bytes of the in-flight bound this connection may read into
        self._paused_for_room = False
        self._arm_head()  # the first head
        self.guard.opened(self)

    # ------------------------------------------------------------------ state
    def idle(self) -> bool:
        """No request is being answered (a stalled head or an unread body counts as idle)."""
        return not self.transport.is_closing() and (self.cycle is None or self.cycle.response_complete)

    def body_unread(self) -> bool:
        return not self._lost and self.conn.their_state is h11.SEND_BODY

    def closed(self) -> bool:
        return self._lost or self._raw_transport.is_closing()

    def pause_for_room(self) -> None:
        self._paused_for_room = True
        self._raw_transport.pause_reading()
        if self.guard.metrics is not None:
            self.guard.metrics.connections_waited.inc()

    def resume_after_room(self) -> None:
        self._paused_for_room = False
        self._raw_transport.resume_reading()

    def close_now(self, reason: str) -> None:
        if not self._raw_transport.is_closing():
            self.guard.count_closed(reason)
            self._raw_transport.close()

    # ------------------------------------------------------------------ uvicorn hooks
    def data_received(self, data: bytes) -> None:
        if self._draining:
            self._drained += len(data)
            if self._drained > self.guard.drain_bytes:
                self.close_now("drain_limit")
            else:
                self._linger_idle.cancel()
                self._linger_idle = self.loop.call_later(LINGER_IDLE_S, self.close_now, "drain_timeout")
            return
        super().data_received(data)

    def handle_events(self) -> None:
        token = _CONNECTION.set(self)
        try:
            super().handle_events()
        finally:
            _CONNECTION.reset(token)
        self._update_timers()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.closed() and not self._draining:
            self.guard.reserve_read(self)  # to read the next request (its charge took the last one over)
        self._update_timers()

    def connection_lost(self, exc):
        self._lost = True
        self._draining = False
        for timer in (self._head_timer, self._body_timer, self._drain_timer, self._linger_idle):
            if timer is not None:
                timer.cancel()
        self.guard.lost(self)
        super().connection_lost(exc)

    # ------------------------------------------------------------------ timers
    def _update_timers(self) -> None:
        if self._lost or self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._head_timer is None and self.conn.trailing_data[0]:
                self._arm_head()  # the first bytes of another head
        elif self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if state is h11.SEND_BODY:
            if self._body_timer is None:
                self._body_grace_used = False
                self._body_timer = self.loop.call_later(self.guard.read_timeout, self._body_expired)
        elif self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _arm_head(self) -> None:
        self._head_timer = self.loop.call_later(self.guard.read_timeout, self._head_expired)

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.close_now("head_timeout")

    def _body_expired(self) -> None:
        self._body_timer = None
        if not self.body_unread() or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_started and not self._body_grace_used:
            self._body_grace_used = True  # the application may still answer (408): let it
            self._body_timer = self.loop.call_later(BODY_GRACE_S, self._body_expired)
            return
        self.close_now("body_timeout")

    # ------------------------------------------------------------------ lingering close
    def start_draining(self) -> None:
        self._draining = True
        # What a lingering close reads is discarded within the read (one event loop callback at a
        # time), so it holds no buffer: its reservation goes to a waiting connection.
        self.guard.release_read(self)
        for name in ("_head_timer", "_body_timer"):
            timer = getattr(self, name)
            if timer is not None:
                timer.cancel()
                setattr(self, name, None)
        self._raw_transport.write_eof()  # the answer, then FIN: the client knows it is complete
        self.flow.resume_reading()
        self._drain_timer = self.loop.call_later(self.guard.read_timeout, self.close_now, "drain_timeout")
        self._linger_idle = self.loop.call_later(min(LINGER_IDLE_S, self.guard.read_timeout), self.close_now,
                                                 "drain_timeout")
        self.guard.count_closed("lingering_close")


def guarded_protocol(guard: ConnectionGuard) -> type[GuardedH11Protocol]:
    """A protocol class for `uvicorn.Config(http=...)` bound to `guard`."""
    return type("SrgrpoH11Protocol", (GuardedH11Protocol,), {"guard": guard})
