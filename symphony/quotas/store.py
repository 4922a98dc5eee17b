"""Atomic quota reservations in Redis: one script call per request, one per settlement.

The semantics (windows, buckets, keys, runtime caps) are written down in
``symphony.quotas.rules``. This module turns a list of ``Limit``s into one Lua call that
checks every window and writes all of them or none, and computes, for a refusal,
when the refused window will have room again (the retry-after a client gets).

The script reads the time from its arguments, not from Redis, so the shared
simulated clock drives quota windows like everything else.
"""

from __future__ import annotations

import functools
import itertools
import operator
import secrets
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import OutOfMemoryError, ReadOnlyError

from symphony.keys import reservation_marker_key
from symphony.quotas.rules import Limit, Metric

# One call reserves a batch: every reservation a proxy process makes against the same limits while
# the call before it is in flight (``symphony.quotas.batches``), so concurrent requests share the
# reads and writes of the windows; alone, a reservation is a batch of one.
# KEYS: each reservation's marker; then every limit's runtime-cap key (read with the markers in one
# MGET); then every limit's window hash.
# ARGV[1] = the markers' TTL; ARGV[2] = how many reservations; ARGV[3] = the numbers, packed as
# little-endian doubles (``packed``): now (event ms), then per limit its current bucket's number,
# how many buckets it counts (the current one and those before it), policy cap, TTL ms, and the
# length in ms of a first-use window (0 for the others); then per reservation its amount per limit.
# ARGV[3 + i] = limit i's current bucket as text (its field).
# Packed, because Redis makes a string of every argument and Lua's tonumber parses one with
# glibc's strtod: with 63 numbers as text a reservation on 10 windows took 520k instructions
# under callgrind, packed 438k.
# A first-use window's hash is {start, used}: it reopens (used = 0) once `now` passes
# start + length, so its reset follows event time even when the clock is simulated.
# A bucketed window's hash also keeps 'newest' (the newest bucket a reservation wrote) and 'sum'
# (what the window held at 'newest': that bucket and the n - 1 before it), so a reservation
# within the newest bucket reads three fields instead of every bucket the window counts (24 for
# a day). A reservation that moves 'newest' on sums the buckets and writes both; one that writes
# an older bucket, or a settlement of one, drops 'newest' and the next reservation sums again.
# A write that opens a bucket deletes the buckets that have left the window and sets the hash's
# TTL (window + sub): the newest bucket opened no earlier than that write, and it stops counting
# one window after it opened, so the hash outlives every bucket a window can still count.
# The reservations are checked in order, each against the windows as the ones before it left them,
# and granted or refused on their own; every window is written once, with what the grants added.
# A granted reservation sets its marker to 'r', so one whose reply was lost can be found and
# cancelled later, and so the same call run again counts nothing: redis-py's clients retry a
# command whose connection failed, and one Redis ran before the failure runs twice (the cluster
# client closes every connection when a node answers CLUSTERDOWN during a failover, replies in
# flight on the healthy nodes included). A replay answers the grant the first run made: the room
# it left, and a first-use window's start as it stands.
# Returns {head, then per reservation 1 (granted), 2 (granted by an earlier run of the same call:
# a replay, which counts nothing now) or {0, index of the refused limit (1-based), cap in force,
# ms until a first-use window closes, bucket values...}}. The head is packed (little-endian int64):
# per limit its first-use window's start (0 for the others), then per limit the room its window had
# before the batch (the cap in force minus what the window held). The caller knows each
# reservation's amounts, so it finds the room a grant left from the head; a reply table per grant
# cost Redis more than the grant's checks and writes (converting Lua tables to the reply was a
# quarter of a grant's instructions in batches of 16, under callgrind).
# Numbers go to redis.call as strings formatted with '%d': a Lua number handed to redis.call is
# formatted with '%.17g', whose glibc code was the script's largest cost (a third of its
# instructions under callgrind).
RESERVE_LUA = """
local fields = {}
local function buckets(key, current, n)
  for j = 1, n do fields[j] = string.format('%d', current + 1 - j) end
  local values, used = redis.call('HMGET', key, unpack(fields, 1, n)), 0
  for j = 1, n do
    values[j] = tonumber(values[j] or '0')
    used = used + values[j]
  end
  return values, used
end
local function prune(key, oldest)
  local stale = {}
  for _, field in ipairs(redis.call('HKEYS', key)) do
    local bucket = tonumber(field)
    if bucket and bucket < oldest then stale[#stale + 1] = field end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
end
local count = tonumber(ARGV[2])
local limits = #ARGV - 3
local v = {struct.unpack('<' .. string.rep('d', 1 + (5 + count) * limits), ARGV[3])}
local now = v[1]
local marked = redis.call('MGET', unpack(KEYS, 1, count + limits))
-- Per limit: its cap in force, what its window held, its first-use start and the ms until it
-- closes, the value of the bucket a write goes to, and how: 1 within 'newest', 2 moving 'newest'
-- on, 3 behind 'newest'; and what the batch's grants add.
local caps, used, starts, closes, held, mode, added = {}, {}, {}, {}, {}, {}, {}
for i = 1, limits do
  local a = 5 * i - 3
  local current, n, span = v[a], v[a + 1], v[a + 4]
  local key, field = KEYS[count + limits + i], ARGV[3 + i]
  caps[i] = marked[count + i] and tonumber(marked[count + i]) or v[a + 2]
  used[i], starts[i], closes[i], added[i] = 0, 0, 0, 0
  if span > 0 then
    local stored = redis.call('HMGET', key, 'start', 'used')
    local start = tonumber(stored[1] or '-1')
    if start < 0 or now >= start + span then
      start = now
    elseif stored[2] then
      used[i] = tonumber(stored[2])
    end
    starts[i], closes[i] = start, start + span - now
  else
    local stored = redis.call('HMGET', key, 'newest', 'sum', field)
    if stored[1] == field then
      used[i], held[i], mode[i] = tonumber(stored[2]), stored[3] and tonumber(stored[3]) or 0, 1
    else
      local values
      values, used[i] = buckets(key, current, n)
      held[i] = values[1]
      mode[i] = (stored[1] and tonumber(stored[1]) > current) and 3 or 2
    end
  end
end
local function refusal(i)
  local reply, a = {0, i, caps[i], closes[i], used[i] + added[i]}, 5 * i - 3
  if v[a + 4] == 0 then
    local values = buckets(KEYS[count + limits + i], v[a], v[a + 1])
    values[1] = values[1] + added[i]
    for j = 1, v[a + 1] do reply[4 + j] = values[j] end
  end
  return reply
end
local head = {}
for i = 1, limits do head[i], head[limits + i] = starts[i], caps[i] - used[i] end
local replies, granted = {struct.pack('<' .. string.rep('i8', 2 * limits), unpack(head))}, false
for r = 1, count do
  local base, replay, refused = 1 + (5 + r - 1) * limits, marked[r] ~= false, nil
  if not replay then
    for i = 1, limits do
      local amount = v[base + i]
      if amount > 0 and used[i] + added[i] + amount > caps[i] then
        refused = i
        break
      end
    end
  end
  if refused then
    replies[r + 1] = refusal(refused)
  elseif replay then
    replies[r + 1] = 2
  else
    for i = 1, limits do added[i] = added[i] + v[base + i] end
    redis.call('SET', KEYS[r], 'r', 'PX', ARGV[1])
    granted = true
    replies[r + 1] = 1
  end
end
for i = 1, granted and limits or 0 do
  local a, key, amount, field = 5 * i - 3, KEYS[count + limits + i], added[i], ARGV[3 + i]
  if v[a + 4] ~= 0 then
    local start, total = string.format('%d', starts[i]), string.format('%d', used[i] + amount)
    redis.call('HSET', key, 'start', start, 'used', total)
    redis.call('PEXPIRE', key, string.format('%d', v[a + 3]))
  elseif amount > 0 then
    local value, sum = string.format('%d', held[i] + amount), string.format('%d', used[i] + amount)
    if mode[i] == 1 then
      redis.call('HSET', key, field, value, 'sum', sum)
    elseif mode[i] == 2 then
      redis.call('HSET', key, field, value, 'sum', sum, 'newest', field)
    else
      redis.call('HSET', key, field, value)
      redis.call('HDEL', key, 'newest')
    end
    if held[i] == 0 then  -- the bucket opened
      prune(key, v[a] + 1 - v[a + 1])
      redis.call('PEXPIRE', key, string.format('%d', v[a + 3]))
    end
  end
end
return replies
"""

# KEYS[1]: the reservation's marker; then the windows it counted against. ARGV[1]: the
# marker's TTL; ARGV[2]: 0 to settle, 1 to cancel a reservation whose reply was lost (only if
# its marker says it was made); ARGV[3]: the numbers, packed as RESERVE_LUA's are: per window the
# amount to add (negative refunds), the bucket the reservation wrote, the start of its first-use
# window (0 for a bucketed window; -t for "the window open at t") and its TTL; ARGV[3 + i]:
# window i's bucket as text. A marker at 's' means settled already: a replay changes nothing.
# A first-use window that has since reopened is left alone; a refund never takes a bucket below
# zero; a charge re-creates a bucket that was pruned or expired (it is outside its window, and
# the next bucket opened prunes it again). A bucketed window's 'sum' follows a settlement of its
# 'newest' bucket; a settlement of any other drops 'newest'.
SETTLE_LUA = """
local state = redis.call('GET', KEYS[1])
if state == 's' or (ARGV[2] == '1' and state ~= 'r') then return 0 end
redis.call('SET', KEYS[1], 's', 'PX', ARGV[1])
local windows = #KEYS - 1
local v = {struct.unpack('<' .. string.rep('d', 4 * windows), ARGV[3])}
for i = 1, windows do
  local key, j, bucket = KEYS[i + 1], 4 * i - 3, ARGV[3 + i]
  local delta, start, ttl = v[j], v[j + 2], v[j + 3]
  if delta == 0 then
  elseif start ~= 0 then
    local open = tonumber(redis.call('HGET', key, 'start') or '-1')
    if open == start or (start < 0 and open >= 0 and open <= -start and -start < open + ttl) then
      local used = redis.call('HINCRBY', key, 'used', string.format('%d', delta))
      if used < 0 then redis.call('HSET', key, 'used', '0') end
    end
  else
    local stored = redis.call('HMGET', key, bucket, 'newest', 'sum')
    if stored[1] or delta > 0 then
      local old = stored[1] and tonumber(stored[1]) or 0
      local value = math.max(old + delta, 0)
      if stored[2] == bucket then
        local sum = (stored[3] and tonumber(stored[3]) or 0) + value - old
        redis.call('HSET', key, bucket, string.format('%d', value), 'sum', string.format('%d', sum))
      else
        redis.call('HSET', key, bucket, string.format('%d', value))
        if stored[2] then redis.call('HDEL', key, 'newest') end
      end
      -- Only a bucket this call created can be in a hash that has no TTL (one that had expired).
      if not stored[1] and redis.call('PTTL', key) < 0 then
        redis.call('PEXPIRE', key, string.format('%d', ttl))
      end
    end
  end
end
return 1
"""

# A script argument: Redis takes every one as a string.
Arg = int | str | bytes


def packed(numbers: Sequence[int]) -> bytes:
    """``numbers`` as the scripts' ``struct.unpack`` reads them: little-endian doubles, which is what
    Lua's numbers are in Redis (text arguments become the same doubles through ``tonumber``)."""
    return struct.pack(f"<{len(numbers)}d", *numbers)


# How long a reservation's marker lives: a settlement replayed, or a lost reservation
# cancelled, later than this (Redis away for longer) could be applied twice or not at all.
MARKER_TTL_MS = 10 * 60 * 1000
# The probe key's life: only its write matters, so it need not outlast the probe.
PROBE_TTL_MS = 10_000


@dataclass(frozen=True, slots=True)
class Amounts:
    """What one request counts: its tokens, its cost in micro-dollars, and (usually) one request.

    ``requests`` is 0 for an attempt that must not count as another request (an app's
    fallback attempts) and, in a settlement, to give a reserved request back (a refund).
    """

    tokens: int
    cost_micros: int = 0
    requests: int = 1

    def counts(self) -> tuple[int, int, int]:
        """Its requests, tokens and cost, in ``METRIC_ORDER``."""
        return (self.requests, self.tokens, self.cost_micros)

    def of(self, metric: Metric) -> int:
        if metric == "requests":
            return self.requests
        return self.tokens if metric == "tokens" else self.cost_micros


# What settling a reservation changes in one window: (window key, delta, bucket, start, TTL): the
# delta goes to the bucket the reservation wrote, or to its first-use window that opened at start
# (0 for a bucketed window; -t: the one open at t). After the key, SETTLE_LUA's numbers in its order.
WindowChange = tuple[str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Reservation:
    """What a granted reservation wrote, so settlement touches the same buckets."""

    provider: str
    model: str
    reserved: Amounts
    settle_keys: tuple[str, ...]  # every window counted against (its hash)
    settle_metrics: tuple[Metric, ...]
    settle_args: tuple[int, ...]  # per key: the bucket written, a first-use window's start (else 0), TTL
    token: str = ""  # names the reservation's marker
    # What the reservation saw: per limit, its name and the room left in its window once it was made
    # (none for a reservation made without a reply, ``ReservePlan.unconfirmed``). Paired when read:
    # most reservations are settled without anyone asking.
    names: tuple[str, ...] = field(default=(), compare=False)
    room: tuple[int, ...] = field(default=(), compare=False)

    @property
    def remaining(self) -> tuple[tuple[str, int], ...]:
        """Per limit (by name), the room left in its window once the reservation was made."""
        return tuple(zip(self.names, self.room, strict=False))

    @property
    def marker_key(self) -> str:
        return marker_key(self.settle_keys, self.token)

    def settle_call(self, actual: Amounts, *, cancel: bool = False) -> tuple[list[str], list[Arg]] | None:
        """SETTLE_LUA's keys and arguments, or None for a reservation that counted nothing."""
        if not self.settle_keys:
            return None
        # Called even when nothing changes, so the marker records that this reservation is settled.
        keys, numbers, fields = [self.marker_key], [], []
        for key, *window_numbers in self.changes(actual):
            keys.append(key)
            numbers += window_numbers
            fields.append(str(window_numbers[1]))  # the bucket
        return keys, [MARKER_TTL_MS, int(cancel), packed(numbers), *fields]

    def changes(self, actual: Amounts) -> list[WindowChange]:
        """The windows whose count ``actual`` changes (a reservation's request windows, as a rule, do
        not), each with the difference actual - reserved and where the reservation wrote it."""
        changes: list[WindowChange] = []
        args = self.settle_args
        for index, metric in enumerate(self.settle_metrics):
            delta = actual.of(metric) - self.reserved.of(metric)
            if delta:
                start = 3 * index
                key = self.settle_keys[index]
                changes.append((key, delta, args[start], args[start + 1], args[start + 2]))
        return changes

    @property
    def tokens(self) -> int:
        return self.reserved.tokens

    def actual(self, tokens: int, cost_micros: int, *, refund: bool = False) -> Amounts:
        """What the request really counted: its request stays as reserved unless ``refund``."""
        return Amounts(tokens, cost_micros, 0 if refund else self.reserved.requests)


@dataclass(frozen=True, slots=True)
class Refusal:
    limit: Limit
    cap: int
    used: int
    retry_after_ms: int | None  # None: the request alone is bigger than the cap
    requested: int = 0  # what the refused request asked of this limit

    @property
    def message(self) -> str:
        return f"{self.limit.name}: {self.used} of {self.cap} used"


@dataclass(frozen=True, slots=True, eq=False)  # one per list of limits (layout_of): hashed by identity
class Layout:
    """What a reservation against a list of limits sends that does not change between requests.

    Built once per list (``layout_of``), so a request only adds the time, its amounts and its
    token: two keys per limit (runtime cap, window) and each window's constants.
    """

    limits: tuple[Limit, ...]
    keys: tuple[str, ...]  # every limit's runtime cap key, then every limit's window key
    window_keys: tuple[str, ...]
    metrics: tuple[Metric, ...]
    # Per limit, where its metric sits in ``Amounts.counts()``: a reservation's amounts in one call.
    pick: Callable[[tuple[int, int, int]], Any]
    names: tuple[str, ...]
    tag: str  # the scope's hash tag, for the marker
    first_use: tuple[bool, ...]
    # Per limit, what RESERVE_LUA takes besides the bucket: buckets counted, policy cap, TTL, and a
    # first-use window's length (0 for the others).
    constants: tuple[tuple[int, int, int, int], ...]
    # RESERVE_LUA's per-limit numbers after the time, each limit's bucket left at 0.
    template: tuple[int, ...]

    @staticmethod
    def of(limits: tuple[Limit, ...]) -> Layout:
        window_keys = tuple(limit.key for limit in limits)
        keys = tuple(limit.runtime_cap_key for limit in limits) + window_keys
        tag = hash_tag(window_keys[0]) if limits else "{none}"
        return Layout(
            limits,
            keys,
            window_keys,
            metrics := tuple(limit.metric for limit in limits),
            _picker(metrics),
            tuple(limit.name for limit in limits),
            tag,
            tuple(limit.window.reset == "first_use" for limit in limits),
            constants := tuple(_constants(limit) for limit in limits),
            tuple(n for counted, cap, ttl, span in constants for n in (0, counted, cap, ttl, span)),
        )

    def buckets(self, now_ms: int) -> tuple[int, ...]:
        """Per limit, the bucket a reservation at ``now_ms`` writes (0 for a first-use window)."""
        return tuple(limit.window.current_bucket(now_ms) for limit in self.limits)

    def reserve_args(
        self, now_ms: int, buckets: Sequence[int], amounts: Sequence[Sequence[int]]
    ) -> list[Arg]:
        """RESERVE_LUA's arguments for a batch: the constants are in place, the time, the buckets and
        each reservation's amounts (one per limit) go in."""
        numbers = [now_ms, *self.template]
        numbers[1::5] = buckets
        for each in amounts:
            numbers += each
        return [MARKER_TTL_MS, len(amounts), packed(numbers), *map(str, buckets)]

    def reservation(
        self,
        buckets: Sequence[int],
        provider: str,
        model: str,
        reserved: Amounts,
        starts: Sequence[int],
        token: str,
        remaining: Sequence[int],
    ) -> Reservation:
        """The record of a granted reservation: which buckets settlement must correct.

        Request buckets are kept too: a settlement leaves them alone (one request was
        reserved, one was made) unless it refunds the reservation.
        """
        args = _settle_args(self, tuple(buckets), tuple(starts))
        return Reservation(
            provider,
            model,
            reserved,
            self.window_keys,
            self.metrics,
            args,
            token or new_token(),
            self.names,
            tuple(remaining),
        )


@functools.lru_cache(maxsize=4096)  # a batch's grants, and a bucket's reservations, share theirs
def _settle_args(layout: Layout, buckets: tuple[int, ...], starts: tuple[int, ...]) -> tuple[int, ...]:
    """Per window: the bucket a reservation wrote, its first-use window's start, its TTL."""
    return tuple(
        value
        for bucket, start, (_, _, ttl, _) in zip(buckets, starts, layout.constants, strict=True)
        for value in (bucket, start, ttl)
    )


METRIC_ORDER: tuple[Metric, ...] = ("requests", "tokens", "usd_micros")  # as Amounts.counts() gives them


def _picker(metrics: tuple[Metric, ...]) -> Callable[[tuple[int, int, int]], Any]:
    """Picks each limit's amount from ``Amounts.counts()`` (a tuple even for one limit)."""
    if len(metrics) < 2:  # itemgetter takes one index or more, and gives a scalar for one
        indexes = [METRIC_ORDER.index(metric) for metric in metrics]
        return lambda counts: tuple(counts[index] for index in indexes)
    return operator.itemgetter(*(METRIC_ORDER.index(metric) for metric in metrics))


def _constants(limit: Limit) -> tuple[int, int, int, int]:
    window = limit.window
    first_use_span = window.length_ms if window.reset == "first_use" else 0
    return window.buckets_counted, limit.cap, window.ttl_ms, first_use_span


# Layouts by the identity of the tuple of limits asked with, each entry holding its tuple (so no other
# object can take its id while it is here): the quota gate and app keys keep one tuple per arm and per
# key, and looking a layout up by value hashes every limit (ten calls of ``Limit.__hash__`` for an
# arm of ``openai/gpt-4o``, a tenth of the client's work in a grant).
_LAYOUTS_BY_ID: dict[int, tuple[tuple[Limit, ...], Layout]] = {}
_LAYOUTS_KEPT = 4096


def layout_of(limits: tuple[Limit, ...]) -> Layout:
    found = _LAYOUTS_BY_ID.get(id(limits))
    if found is not None and found[0] is limits:
        return found[1]
    layout = _layout_by_value(limits)
    if len(_LAYOUTS_BY_ID) >= _LAYOUTS_KEPT:  # callers that build a tuple a call: start again
        _LAYOUTS_BY_ID.clear()
    _LAYOUTS_BY_ID[id(limits)] = (limits, layout)
    return layout


@functools.lru_cache(maxsize=_LAYOUTS_KEPT)
def _layout_by_value(limits: tuple[Limit, ...]) -> Layout:
    """One layout for equal tuples of limits: batches group by layout (``symphony.quotas.batches``)."""
    return Layout.of(limits)


@dataclass(frozen=True, slots=True)
class ReservePlan:
    """One RESERVE_LUA call: a batch of reservations against one layout at one time."""

    keys: list[str]
    args: list[Arg]
    layout: Layout
    buckets: tuple[int, ...]
    now_ms: int
    reserved: tuple[Amounts, ...]  # per reservation
    amounts: tuple[tuple[int, ...], ...]  # per reservation, its amount per limit (as the script gets them)
    tokens: tuple[str, ...]  # per reservation, naming its marker

    @property
    def limits(self) -> tuple[Limit, ...]:
        return self.layout.limits

    def reservation(
        self, index: int, provider: str, model: str, starts: Sequence[int], remaining: Sequence[int] = ()
    ) -> Reservation:
        return self.layout.reservation(
            self.buckets, provider, model, self.reserved[index], starts, self.tokens[index], remaining
        )

    def unconfirmed(self, provider: str, model: str, index: int = 0) -> Reservation:
        """The reservation this plan made if its reply was lost: cancel it once Redis is back."""
        starts = [-self.now_ms if first_use else 0 for first_use in self.layout.first_use]
        return self.reservation(index, provider, model, starts)

    def outcomes(self, replies: list[Any], callers: Sequence[tuple[str, str]]) -> list[Reservation | Refusal]:
        """The script's reply read: each reservation's outcome; ``callers``: each one's (provider, model).

        A grant's room left per window is the room the batch found (the reply's head) less what this
        grant and the grants before it in the batch added."""
        count = len(self.limits)
        head = _int64s(count * 2).unpack(replies[0])
        starts, room = head[:count], head[count:]
        outcomes: list[Reservation | Refusal] = []
        for index, (reply, (provider, model)) in enumerate(zip(replies[1:], callers, strict=True)):
            if reply == 1:  # RESP integers: hiredis reads them as ints
                room = tuple(map(operator.sub, room, self.amounts[index]))
            if isinstance(reply, int):  # 1, or 2 for a grant an earlier run of this call made
                outcomes.append(self.reservation(index, provider, model, starts, room))
            else:
                outcomes.append(self._refusal(index, reply))
        return outcomes

    def _refusal(self, index: int, reply: list[Any]) -> Refusal:
        limit_index, cap, closes_in = int(reply[1]) - 1, int(reply[2]), int(reply[3])
        values = [int(v) for v in reply[4:]]
        limit = self.limits[limit_index]
        amount = self.reserved[index].of(limit.metric)
        eta = retry_after_ms(limit, values, closes_in, amount, cap, self.now_ms)
        return Refusal(limit, cap, sum(values), eta, amount)


@functools.lru_cache(maxsize=64)
def _int64s(count: int) -> struct.Struct:
    return struct.Struct(f"<{count}q")


def hash_tag(key: str) -> str:
    """The ``{…}`` part of a key, which names its Redis Cluster slot."""
    return key[key.index("{") : key.index("}") + 1]


def marker_key(keys: Sequence[str], token: str) -> str:
    """``symphony:reservation:{<scope>}:<token>``, in the same Cluster slot as the buckets."""
    return reservation_marker_key(hash_tag(keys[0]) if keys else "{none}", token)


# A reservation's token names its marker, unique among the markers alive (MARKER_TTL_MS): a random
# prefix per process and a counter, which costs a reservation no system call (os.urandom did).
_TOKEN_PREFIX = secrets.token_hex(6)
_token_numbers = itertools.count()


def new_token() -> str:
    return f"{_TOKEN_PREFIX}{next(_token_numbers):x}"


def reservation_of(
    limits: Sequence[Limit],
    now_ms: int,
    provider: str,
    model: str,
    reserved: Amounts,
    starts: Sequence[int],
    token: str = "",
    remaining: Sequence[int] = (),
) -> Reservation:
    """The record of a granted reservation (``Layout.reservation``), its buckets found from ``now_ms``."""
    layout = layout_of(tuple(limits))
    return layout.reservation(layout.buckets(now_ms), provider, model, reserved, starts, token, remaining)


def plan_reservation(limits: Sequence[Limit], now_ms: int, reserved: Amounts) -> ReservePlan:
    """A batch of one."""
    return plan_batch(layout_of(tuple(limits)), now_ms, (reserved,))


def plan_batch(layout: Layout, now_ms: int, reserved: Sequence[Amounts]) -> ReservePlan:
    tokens = tuple(new_token() for _ in reserved)
    keys = [*(reservation_marker_key(layout.tag, token) for token in tokens), *layout.keys]
    buckets = layout.buckets(now_ms)
    pick = layout.pick
    amounts = tuple(pick(amounts.counts()) for amounts in reserved)
    args = layout.reserve_args(now_ms, buckets, amounts)
    return ReservePlan(keys, args, layout, buckets, now_ms, tuple(reserved), amounts, tokens)


def retry_after_ms(
    limit: Limit, values: Sequence[int], closes_in_ms: int, amount: int, cap: int, now_ms: int
) -> int | None:
    """When the refused window will first have room for ``amount`` again."""
    if amount > cap:
        return None
    window = limit.window
    if window.reset == "first_use":
        return max(closes_in_ms, 0)
    resets_in = window.resets_in_ms(now_ms)
    if resets_in is not None:
        return resets_in
    current = now_ms // window.sub_ms
    for dropped in range(1, len(values) + 1):
        if sum(values[: len(values) - dropped]) + amount <= cap:
            return (current + dropped) * window.sub_ms - now_ms
    return None


# What Redis says when it answers but takes no writes: out of memory under ``noeviction``, a
# read-only replica, a failed RDB save. A script's write gets the same, wrapped by Redis 6
# ("Error running script …: -OOM command not allowed …").
REFUSED_WRITE_CODES = ("OOM", "READONLY", "MISCONF")


class WritesRefused(redis.ConnectionError):
    """Redis answered but took no writes (``REFUSED_WRITE_CODES``): to the quota gate, Redis is away.

    A script is refused at its first write, before anything is written, so a refused reservation was
    not made and a refused settlement can be replayed.
    """


def writes_refused(error: redis.ResponseError) -> WritesRefused | None:
    """``error`` as ``WritesRefused`` if it says Redis takes no writes now, else None."""
    text = str(error)
    refused = isinstance(error, OutOfMemoryError | ReadOnlyError) or any(
        text.startswith(f"{code} ") or f"-{code} " in text for code in REFUSED_WRITE_CODES
    )
    return WritesRefused(text) if refused else None


def raise_if_refused(error: redis.ResponseError) -> None:
    """Raise ``error`` as ``WritesRefused`` if it says Redis takes no writes now; else return."""
    refused = writes_refused(error)
    if refused is not None:
        raise refused from error


class ReservationLost(Exception):
    """Redis failed during a reservation: it may or may not have been made.

    ``reservation`` is what it would have made; cancel it (``cancel``) once Redis is
    back, which undoes it only if it was made.
    """

    def __init__(self, reservation: Reservation) -> None:
        super().__init__("quota reservation outcome unknown: Redis failed during the call")
        self.reservation = reservation


NOTHING = Amounts(0, 0, 0)


class QuotaStore:
    """Reservations through a synchronous Redis client (CLI, tests, benchmarks)."""

    def __init__(self, client: redis.Redis) -> None:
        self._reserve = client.register_script(RESERVE_LUA)
        self._settle = client.register_script(SETTLE_LUA)

    def reserve(
        self,
        limits: Sequence[Limit],
        now_ms: int,
        *,
        provider: str,
        model: str,
        tokens: int,
        cost_micros: int = 0,
        requests: int = 1,
    ) -> Reservation | Refusal:
        plan = plan_reservation(limits, now_ms, Amounts(tokens, cost_micros, requests))
        [outcome] = plan.outcomes(self._reserve(keys=plan.keys, args=plan.args), [(provider, model)])
        return outcome

    def settle(
        self,
        reservation: Reservation,
        actual_tokens: int,
        actual_cost_micros: int = 0,
        *,
        refund: bool = False,
    ) -> None:
        """Correct the reserved buckets to what was used; ``refund`` also gives the request back.

        Idempotent: the same reservation settled again (a replay) changes nothing.
        """
        call = reservation.settle_call(reservation.actual(actual_tokens, actual_cost_micros, refund=refund))
        if call is not None:
            self._settle(keys=call[0], args=call[1])

    def cancel(self, reservation: Reservation) -> None:
        """Undo a reservation whose reply was lost, if (and only if) it was made."""
        call = reservation.settle_call(NOTHING, cancel=True)
        if call is not None:
            self._settle(keys=call[0], args=call[1])
