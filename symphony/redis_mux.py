"""One Redis connection per client, every command multiplexed on it: the proxy's hot-path client.

redis-py's asyncio client takes a connection from its pool for each command, wraps the call in
its retry and observability layers and reads the reply through a stream reader: about 60 µs of
CPU a command on this machine, and a request makes three (a reservation, a settlement, its
events). Here a command is written to the one connection as it is made and its reply resolves a
future: Redis answers a connection's commands in the order they came, so replies are matched to
commands by order alone (about 7 µs a command; ``bench/quota_reserve.py``'s last row is
redis-py's client beside it). A pipeline's commands leave in one write; other commands each in
their own, since the event loop's transport writes at once. Holding a turn's commands back for one
write saved 1 % of the proxy's CPU a request side by side (2026-12-03), too little for the turn of
delay it adds to each reservation.

``MultiplexedRedis`` is redis-py's asyncio ``Redis`` with ``execute_command`` and ``pipeline``
replaced, so every command method, the scripts (``register_script`` and its NOSCRIPT reload) and
the reply callbacks are redis-py's own, and errors are redis-py's classes:

- a reply error is parsed as redis-py parses it (``NoScriptError``, ``ResponseError``, …);
- a lost connection fails every command in flight with ``ConnectionError``, and the next command
  connects again (no retries here: each caller has its own rule for Redis being away);
- a command unanswered for ``socket_timeout`` closes the connection, failing all in flight with
  ``TimeoutError``;
- blocking commands (``BLPOP``, ``XREAD … BLOCK``, ``WAIT``, …) would hold up every command
  behind them, so they are refused (``ValueError``); so are ``WATCH`` and pub/sub.

One server only (``redis://``, ``unix://``); ``symphony.redis_client.hot_path_redis`` hands a
cluster or TLS URL to redis-py's clients instead.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Sequence
from typing import Any, Final, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis._parsers.base import BaseParser
from redis.asyncio.client import Pipeline
from redis.client import EMPTY_RESPONSE, NEVER_DECODE
from redis.exceptions import InvalidResponse, RedisError, ResponseError
from redis.utils import DEFAULT_RESP_VERSION

from symphony import clock

# Commands that make the connection wait on the server, or change what it answers.
REFUSED: Final = frozenset(
    {
        "BLPOP", "BRPOP", "BLMOVE", "BRPOPLPUSH", "BLMPOP", "BZPOPMIN", "BZPOPMAX", "BZMPOP",
        "WAIT", "WAITAOF", "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD",
        "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR", "SELECT", "RESET", "QUIT", "HELLO",
    }
)  # fmt: skip


def _word(arg: Any) -> str:
    return (arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg)).upper()


def _refused(args: Sequence[Any]) -> str | None:
    name = _word(args[0])
    if name in REFUSED:
        return name
    if name in ("XREAD", "XREADGROUP") and any(_word(arg) == "BLOCK" for arg in args[1:]):
        return f"{name} BLOCK"
    return None


def _refuse(args: Sequence[Any]) -> None:
    refused = _refused(args)
    if refused is not None:
        raise ValueError(f"{refused} cannot run on a multiplexed connection; use a client of its own")


def _refuse_any(commands: Sequence[Sequence[Any]]) -> None:
    for args in commands:
        _refuse(args)


def _packed(args: Sequence[Any]) -> bytes:
    name = args[0]
    if isinstance(name, str) and " " in name:  # "SCRIPT LOAD": Redis wants the words apart
        args = (*name.split(), *args[1:])
    try:
        packed: bytes = hiredis.pack_command(tuple(args))
        return packed
    except TypeError as exc:  # a bool, None, …: refused as redis-py refuses it
        raise redis.DataError(f"Invalid input in command {args[0]!r}: {exc}") from exc


class _Connection(asyncio.Protocol):
    """The socket: writes packed commands, resolves each reply's future in order."""

    def __init__(self, socket_timeout: float | None) -> None:
        self._reader = hiredis.Reader(protocolError=InvalidResponse, replyError=BaseParser.parse_error)
        self._waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        self._timeout = socket_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self.lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no asyncio.Transport subclass

    def send(self, commands: Sequence[Sequence[Any]]) -> list[asyncio.Future[Any]]:
        if self.lost is not None or self._transport is None:
            raise redis.ConnectionError(f"Redis connection lost: {self.lost}")
        payload = b"".join(_packed(args) for args in commands)
        loop = asyncio.get_running_loop()
        now = clock.monotonic()
        futures = [loop.create_future() for _ in commands]
        self._waiting.extend((future, now) for future in futures)
        self._transport.write(payload)
        if self._timeout is not None and self._watchdog is None:
            self._watchdog = loop.call_later(self._timeout, self._check_overdue)
        return futures

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            if isinstance(reply, hiredis.PushNotification):  # out of band (RESP3): no command's reply
                continue
            future, _ = self._waiting.popleft()
            if not future.done():  # its caller may have been cancelled; the reply is still consumed
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.ConnectionError(f"Redis connection lost: {exc or 'closed by the server'}"))

    def close(self, reason: BaseException) -> None:
        self._fail(reason)
        if self._transport is not None:
            self._transport.abort()

    def _fail(self, reason: BaseException) -> None:
        if self.lost is None:
            self.lost = reason
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(self.lost)
                # A pipeline awaits only its last reply; whoever awaits still gets the error, but
                # unawaited ones are not asyncio's "exception was never retrieved".
                future.exception()

    def _check_overdue(self) -> None:
        self._watchdog = None
        if not self._waiting or self._timeout is None:
            return
        waited = clock.monotonic() - self._waiting[0][1]
        if waited >= self._timeout:
            self.close(redis.TimeoutError(f"Redis did not answer within {self._timeout} s"))
            return
        self._watchdog = asyncio.get_running_loop().call_later(self._timeout - waited, self._check_overdue)


class MultiplexedRedis(aioredis.Redis):
    """redis-py's asyncio client over one multiplexed connection (module docstring)."""

    _mux: _Connection | None = None
    _connecting: asyncio.Task[_Connection] | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        _refuse(args)
        connection = self._mux if self._mux is not None and self._mux.lost is None else await self._connect()
        reply = await connection.send((args,))[0]
        return self._parsed(args[0], reply, options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return _MultiplexedPipeline(self, transaction)

    async def execute_many(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """``commands`` in one write, each one's reply as Redis sent it, in order; the first error
        reply is raised. A pipeline without redis-py's command objects and reply callbacks, for a
        caller on the hot path that builds its commands itself (the event stream's ``XADD``s)."""
        _refuse_any(commands)
        replies = await self._replies(commands)
        error = next((reply for reply in replies if isinstance(reply, RedisError)), None)
        if error is not None:
            raise error
        return replies

    async def _replies(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Each command's reply, errors as values, the commands sent in one write."""
        mux = self._mux
        connection = mux if mux is not None and mux.lost is None else await self._connect()
        futures = connection.send(commands)
        await futures[-1]  # replies come in order: the last one answered means all were
        return [future.result() for future in futures]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._mux is not None:
            self._mux.close(redis.ConnectionError("Redis client closed"))
            self._mux = None
        await super().aclose(close_connection_pool)

    def _parsed(self, command: Any, reply: Any, options: dict[str, Any]) -> Any:
        # Not only ResponseErrors: redis-py parses some replies into ConnectionErrors (LOADING, a
        # restarted server reading its data, is BusyLoadingError), which must be raised as well.
        if isinstance(reply, RedisError):
            if EMPTY_RESPONSE in options and isinstance(reply, ResponseError):
                return options[EMPTY_RESPONSE]
            raise reply
        options.pop(EMPTY_RESPONSE, None)
        options.pop(NEVER_DECODE, None)
        options.pop("keys", None)
        callback = self.response_callbacks.get(command)
        return reply if callback is None else callback(reply, **options)

    async def _connect(self) -> _Connection:
        # Callers that find no connection share one attempt to make it.
        if self._connecting is None or self._connecting.done():
            self._connecting = asyncio.ensure_future(self._open())
        connection = await asyncio.shield(self._connecting)
        self._mux = connection
        return connection

    async def _open(self) -> _Connection:
        settings = self.connection_pool.connection_kwargs
        timeout = settings.get("socket_timeout")
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(settings.get("socket_connect_timeout")):
                if "path" in settings:
                    _, connection = await loop.create_unix_connection(
                        lambda: _Connection(timeout), settings["path"]
                    )
                else:
                    _, connection = await loop.create_connection(
                        lambda: _Connection(timeout),
                        settings.get("host", "localhost"),
                        settings.get("port", 6379),
                    )
        except (OSError, TimeoutError) as exc:
            raise redis.ConnectionError(f"Error connecting to Redis: {exc}") from exc
        await self._handshake(connection, settings)
        return connection

    async def _handshake(self, connection: _Connection, settings: dict[str, Any]) -> None:
        """The protocol, credentials and database redis-py's own connection would ask for: its reply
        callbacks expect replies in that protocol (RESP3 by default since redis-py 8)."""
        protocol = int(settings.get("protocol") or DEFAULT_RESP_VERSION)
        password, username = settings.get("password"), settings.get("username")
        commands: list[tuple[Any, ...]] = []
        if protocol == 3:
            hello = ("HELLO", 3, "AUTH", username or "default", password) if password else ("HELLO", 3)
            commands.append(hello)
        elif password:
            commands.append(("AUTH", username, password) if username else ("AUTH", password))
        if settings.get("db"):
            commands.append(("SELECT", settings["db"]))
        for reply in await asyncio.gather(*connection.send(commands)) if commands else ():
            if isinstance(reply, RedisError):
                connection.close(reply)
                raise reply


class _MultiplexedPipeline(Pipeline):
    """redis-py's pipeline, its commands sent in one write on the client's connection."""

    def __init__(self, client: MultiplexedRedis, transaction: bool) -> None:
        super().__init__(client.connection_pool, client.response_callbacks, transaction, None)
        self._client = client

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        stack = self.command_stack
        if not stack:
            return []
        for script in self.scripts:  # what EVALSHA in the pipeline needs loaded (SCRIPT LOAD is idempotent)
            await self._client.script_load(script.script)
        commands = [args for args, _ in stack]
        _refuse_any(commands)
        try:
            replies = await self._sent(commands)
            return self._results(replies, raise_on_error)
        finally:
            await self.reset()  # type: ignore[no-untyped-call]  # redis-py leaves it untyped

    async def _sent(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self.is_transaction:
            return await self._client._replies(commands)
        replies = await self._client._replies([("MULTI",), *commands, ("EXEC",)])
        queued_errors = [reply for reply in replies[1:-1] if isinstance(reply, RedisError)]
        if queued_errors:
            raise queued_errors[0]
        if replies[-1] is None:
            raise redis.WatchError("the transaction was aborted")
        if isinstance(replies[-1], RedisError):
            raise replies[-1]
        return list(replies[-1])

    def _results(self, replies: list[Any], raise_on_error: bool) -> list[Any]:
        results: list[Any] = []
        for (args, options), reply in zip(self.command_stack, replies, strict=True):
            if isinstance(reply, RedisError):
                if raise_on_error:
                    raise type(reply)(
                        f"Command # {len(results) + 1} ({args[0]!r}) of pipeline caused error: {reply}"
                    )
                results.append(reply)
                continue
            results.append(self._client._parsed(args[0], reply, dict(options)))
        return results
