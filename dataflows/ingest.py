"""The ingest dataflow: the event stream into ClickHouse, invalid entries into ``dead_letters``.

Reads top to bottom; each step is followed by the shape of its output. Nothing
an entry contains can stop the flow: whatever does not validate becomes a dead
letter with the reason, and the events around it carry on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource
from bytewax.outputs import Sink
from pydantic import ValidationError

from dataflows.learner import learner_updates
from dataflows.quotas import quota_updates
from dataflows.redis_source import Entry, SourceState
from dataflows.slo import slo_alerts
from sinks.clickhouse import (
    ALERTS,
    DEAD_LETTERS,
    EVENT_TABLES,
    QUOTA_SNAPSHOTS,
    DeadLetter,
    Tables,
    alerts_to_arrow,
    dead_letters_to_arrow,
    quota_snapshots_to_arrow,
    to_arrow,
)
from symphony import clock
from symphony.alerts import Alert, SloThresholds
from symphony.catalog import Policy
from symphony.events import EVENT_ADAPTER, EVENT_TYPES, SCHEMA_VERSION, Decision, Feedback, Promotion, Usage
from symphony.quotas import QuotaPolicy, QuotaUpdate
from symphony.serving import PublishedChallenger

MAX_REASON = 1000
FLOW_ID = "ingest"

AnyEvent = Decision | Usage | Feedback
StreamEvent = AnyEvent | Promotion  # what the stream carries: traffic, and the promotions the CLI records
PROMOTIONS = EVENT_TABLES["promotion"]
_UNION = EVENT_ADAPTER.validator
# (how the event's type reads in compact JSON, that type's own validator)
_BY_TYPE = [
    (f'"type":"{kind}"'.encode(), model.__pydantic_validator__) for kind, model in EVENT_TYPES.items()
]


def parse(payload: bytes) -> StreamEvent:
    """``symphony.events.parse_event``, a third faster: the same result and the same errors.

    A payload that reads ``"type":"usage"`` is first validated as a ``Usage`` alone
    (skipping the union's dispatch). That is only a guess (the text may sit inside a
    string), but a safe one: each model requires its own ``type``, so what passes as
    a ``Usage`` is what the union would make of it. Anything else, or a failure, goes
    through the union, whose error is the one reported.
    """
    for marker, validator in _BY_TYPE:
        if marker in payload:
            try:
                return cast(StreamEvent, validator.validate_json(payload))
            except ValidationError:
                break
    return cast(StreamEvent, _UNION.validate_json(payload))


def describe(exc: ValidationError) -> str:
    """Why an entry is not a valid event, in one line, most telling cause first."""
    errors = exc.errors(include_url=False)
    for err in errors:
        if err["type"] == "json_invalid":
            return f"invalid JSON: {err['msg']}"
    for err in errors:
        if err["loc"] and err["loc"][-1] == "schema_version":
            return f"unknown schema_version {err.get('input')!r} (this engine reads {SCHEMA_VERSION})"
    for err in errors:
        if err["type"] in ("union_tag_invalid", "union_tag_not_found", "model_attributes_type"):
            return f"not an event: {err['msg']}"
    kind = str(errors[0]["loc"][0]) if errors and errors[0]["loc"] else "event"
    details = "; ".join(f"{'.'.join(str(p) for p in err['loc'][1:])}: {err['msg']}" for err in errors[:5])
    more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
    return f"invalid {kind} event: {details}{more}"[:MAX_REASON]


@dataclass(frozen=True)
class Validated:
    tables: Tables  # Arrow columns per table, dead letters included
    usage: list[Usage]  # the batch's valid usage events, for the quotas branch
    events: list[AnyEvent]  # every valid traffic event of the batch (no promotion), for the learner branch


def validate(entries: Sequence[Entry]) -> Validated:
    """Parse a batch of entries into Arrow columns per table, plus the dead letters."""
    received_at = clock.wall_ms()
    events: dict[str, list[StreamEvent]] = {table: [] for table in EVENT_TABLES.values()}
    sources: dict[str, list[Entry]] = {table: [] for table in EVENT_TABLES.values()}
    dead: list[DeadLetter] = []

    def reject(entry: Entry, reason: str) -> None:
        dead.append(DeadLetter(entry.stream, entry.entry_id, entry.payload or b"", reason, received_at))

    for entry in entries:
        if entry.payload is None:
            reject(entry, "entry has no 'e' field")
            continue
        try:
            event = parse(entry.payload)
        except ValidationError as exc:
            reject(entry, describe(exc))
            continue
        table = EVENT_TABLES[event.type]
        events[table].append(event)
        sources[table].append(entry)

    tables: Tables = {}
    usage: list[Usage] = []
    valid: list[AnyEvent] = []
    for table, batch in events.items():
        if not batch:
            continue
        tables[table], rejected = to_arrow(table, batch)
        for index, reason in rejected:
            reject(sources[table][index], reason)
        # Only what ClickHouse takes feeds the other branches: a dead letter is no event.
        refused = {index for index, _ in rejected}
        kept = [e for i, e in enumerate(batch) if i not in refused] if refused else batch
        if table != PROMOTIONS:  # not traffic: no branch but the tables takes it
            valid.extend(cast(list[AnyEvent], kept))
        if table == EVENT_TABLES["usage"]:
            usage = [e for e in kept if isinstance(e, Usage)]
    if dead:
        tables[DEAD_LETTERS] = dead_letters_to_arrow(dead)
    return Validated(tables, usage, valid)


def snapshot_tables(update: QuotaUpdate) -> Tables:
    return {QUOTA_SNAPSHOTS: quota_snapshots_to_arrow(update.etas)}


def build_flow(
    source: FixedPartitionedSource[list[Entry], SourceState],
    sink: Sink[Tables],
    quotas: tuple[QuotaPolicy, Sink[QuotaUpdate]] | None = None,
    learner: tuple[Policy, Sink[PublishedChallenger]] | None = None,
    slo: tuple[SloThresholds, str, Sink[Alert]] | None = None,
) -> Dataflow:
    flow = Dataflow(FLOW_ID)
    batches = op.input("read", flow, source)
    # [Entry(stream, entry_id, payload), ...]: one XREAD reply from one shard
    validated = op.map("validate", batches, validate)
    # Validated(tables={"decisions": pa.Table, "usage": …, "feedback": …, "dead_letters": …}, usage=[Usage])
    op.output("write", op.map("tables", validated, lambda v: v.tables), sink)
    if quotas is not None:
        policy, state_sink = quotas
        usage = op.filter_map("usage_events", validated, lambda v: v.usage or None)
        # [Usage, ...]: the batch's valid usage events
        updates = quota_updates(usage, policy)
        # QuotaUpdate(provider, etas, adjustments)
        op.output("write_quota_state", updates, state_sink)
        op.output("write_quota_snapshots", op.map("snapshot_tables", updates, snapshot_tables), sink)
        # {"quota_snapshots": pa.Table}
    valid = op.filter_map("learner_events", validated, lambda v: v.events or None)
    # [Decision | Usage | Feedback, ...]: the batch's valid events
    if learner is not None:
        champion, challenger_sink = learner
        op.output("publish_challenger", learner_updates(valid, champion), challenger_sink)
        # PublishedChallenger(version, payload) -> symphony:policy:challenger
    if slo is not None:
        thresholds, trace_url_template, alert_sink = slo
        alerts = slo_alerts(valid, thresholds)
        # Alert(status, objective, provider, model, value, ...): fired, refreshed, resolved
        op.output("send_alerts", alerts, alert_sink)
        transitions = op.filter("alert_transitions", alerts, lambda alert: alert.transition)
        tables = op.map(
            "alert_tables", transitions, lambda a: {ALERTS: alerts_to_arrow([a], trace_url_template)}
        )
        op.output("write_alerts", tables, sink)
        # {"alerts": pa.Table}
    return flow
