"""``symphony learner-promote``: the learner's challenger proposed as the next champion, as a pull request.

It reads the learner's report (the engine's ``GET /learner/metrics``, or ``--report FILE``
as saved by ``learner-metrics --json`` or its ``runs/learner-metrics.jsonl``, whose last
line is taken) and the challenger the learner published (Redis, or ``--challenger FILE``).
The report must have evaluated that very challenger. From the challenger's per-task
tables it builds the proposed champion (``learner.policy_diff.propose``) and plans the
promotion against the champion committed on ``--base`` (``learner.pull_request``).

``--dry-run`` prints the plan and the policy diff and writes nothing. Otherwise the new
champion is committed on branch ``learner/promote-<version>`` (the checkout is never
touched) and, when ``GITHUB_TOKEN`` and ``GITHUB_REPOSITORY`` are both set, pushed and
opened as a pull request (``GITHUB_API_URL`` for GitHub Enterprise). Only this command
reads the GitHub token, and only to send it to that API.

Each promotion it commits is recorded as a ``promotion`` event on the event stream
(``symphony.events.Promotion``: version, verdict and uplift, branch, commit, pull request, the
diff), which the engine writes once into ClickHouse ``promotions``, where the console shows the
history. The event carries no secret. When Redis cannot take it, the command says so on stderr;
the branch and the pull request stand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import redis

from learner.policy_diff import propose
from learner.pull_request import (
    DEFAULT_API_URL,
    DEFAULT_BASE,
    GitHub,
    Plan,
    PromotionError,
    Result,
    base_champion,
    plan_promotion,
    promote,
)
from symphony import clock
from symphony.catalog import Catalog, load_catalog
from symphony.events import Promotion, new_id
from symphony.keys import CHALLENGER_KEY
from symphony.redis_client import sync_redis
from symphony.serving import UNIFORM_VERSION, ChallengerPolicy
from symphony.settings import Settings
from symphony.stream import publish

_NOT_IN_A_VERSION = re.compile(r"[^A-Za-z0-9._-]+")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and the policy diff; write nothing"
    )
    add_target_arguments(parser)
    parser.add_argument("--report", type=Path, help="a saved learner report (JSON, or .jsonl: its last line)")
    parser.add_argument(
        "--challenger", type=Path, help="the published challenger as JSON (default: from Redis)"
    )
    parser.add_argument(
        "--days", type=int, default=7, help="days of evidence when asking the engine (default 7)"
    )
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    parser.add_argument("--force", action="store_true", help="commit even if the report names no candidate")
    parser.add_argument("--json", action="store_true", help="print the plan (and the result) as JSON")


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """Where a promotion goes: shared with ``symphony learner-week``."""
    parser.add_argument(
        "--version", help="the new champion's version (default: <UTC date>-<challenger version>)"
    )
    parser.add_argument(
        "--base", default=DEFAULT_BASE, help=f"the branch holding the champion (default {DEFAULT_BASE})"
    )
    parser.add_argument(
        "--repo", type=Path, default=Path("."), help="the repository (default: the current one)"
    )


def command(settings: Settings, args: argparse.Namespace) -> int:
    report = _report(settings, args)
    challenger = published_challenger(settings, args.challenger)
    plan = plan_for(report, challenger, args, settings.read_catalog())
    result = None if args.dry_run else promote(plan, force=args.force)
    print(render(plan, result, as_json=args.json, dry_run=args.dry_run), flush=True)
    if result is not None:
        try:
            record(settings, promotion_event(plan, result, report, 0))
        except redis.RedisError as exc:
            print(
                f"symphony learner-promote: not recorded in the promotion history (REDIS_URL="
                f"{settings.redis_url}: {exc}); the branch and the pull request stand",
                file=sys.stderr,
            )
    return 0


def promotion_event(plan: Plan, result: Result, report: Mapping[str, Any], ts: int) -> Promotion:
    """What the console's history keeps of a promotion made at ``ts`` (0: stamped by ``record``)."""
    windows = [w for w in report.get("windows") or [] if w.get("group") == "all"]
    latest = max(windows, key=lambda w: int(w["start_ms"]), default=None)
    uplift = latest.get("uplift_low") if latest is not None else None
    return Promotion(
        event_id=new_id(ts),
        ts=ts,
        version=plan.version,
        champion_version=plan.champion_version,
        challenger_version=str(report.get("challenger_version", "")),
        candidate=bool((report.get("promotion") or {}).get("candidate")),
        uplift_low=None if uplift is None else float(uplift),
        forced_over=list(plan.blockers),  # promote() went ahead over them: --force
        base=plan.base,
        branch=result.branch,
        commit=result.commit,
        pull_request_url=result.pull_request_url or "",
        pull_request_number=result.pull_request_number or 0,
        diff=plan.diff,
    )


def record(settings: Settings, event: Promotion) -> Promotion:
    """Publish the promotion on the event stream, stamped with the shared clock's time (event time)."""
    client = sync_redis(settings.redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        ts = clock.shared_clock(client).now_ms()
        stamped = event.model_copy(update={"event_id": new_id(ts), "ts": ts})
        publish(client, [stamped], settings.event_shards)
    finally:
        client.close()
    return stamped


def plan_for(
    report: Mapping[str, Any],
    challenger: ChallengerPolicy,
    args: argparse.Namespace,
    catalog: Catalog | None = None,
) -> Plan:
    """The promotion of ``challenger``, which ``report`` must have evaluated, onto ``args``' target;
    the proposed policy's arms are checked against ``catalog`` (the bundled one by default)."""
    repo = _toplevel(args.repo)
    evaluated = report.get("challenger_version")
    if evaluated != challenger.version:
        raise PromotionError(
            f"the report evaluated challenger {evaluated}, but {challenger.version} is published now: "
            "run `just learner-metrics` again (or pass the matching --report)"
        )
    champion, _ = base_champion(repo, args.base)
    version = args.version or _default_version(challenger.version)
    proposed = propose(champion, challenger.tables(champion.tasks), version)
    return plan_promotion(
        repo,
        proposed,
        report,
        base=args.base,
        github=github_from_env(os.environ),
        catalog=catalog or load_catalog(),
    )


def github_from_env(env: Mapping[str, str]) -> GitHub | None:
    """The pull request's target when both ``GITHUB_TOKEN`` and ``GITHUB_REPOSITORY`` are set."""
    token, repository = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
    if not token and not repository:
        return None
    if not (token and repository):
        missing = "GITHUB_TOKEN" if not token else "GITHUB_REPOSITORY"
        raise PromotionError(f"{missing} is not set: set both GITHUB_TOKEN and GITHUB_REPOSITORY, or neither")
    return GitHub(repository, token, api_url=env.get("GITHUB_API_URL") or DEFAULT_API_URL)


def _toplevel(path: Path) -> Path:
    found = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--show-toplevel"], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        raise PromotionError(f"{path.resolve()} is not in a git repository: pass --repo")
    return Path(found.stdout.strip())


def _report(settings: Settings, args: argparse.Namespace) -> dict[str, Any]:
    if args.report is None:
        from symphony import engine_client

        return engine_client.learner_metrics(settings.engine_url_as("analyst"), args.days, args.resamples)
    try:
        lines = [line for line in args.report.read_text().splitlines() if line.strip()]
        report = json.loads(lines[-1] if args.report.suffix == ".jsonl" else "\n".join(lines))
    except (OSError, IndexError, ValueError) as exc:
        raise PromotionError(f"cannot read the report {args.report}: {exc}") from None
    if not isinstance(report, dict):
        raise PromotionError(f"the report {args.report} is not a JSON object")
    return report


def published_challenger(settings: Settings, path: Path | None = None) -> ChallengerPolicy:
    if path is not None:
        try:
            return ChallengerPolicy.from_json(path.read_bytes())
        except (OSError, ValueError) as exc:
            raise PromotionError(f"cannot read the challenger {path}: {exc}") from None
    raw = _published_challenger(settings)
    if raw is None:
        raise PromotionError(
            f"no challenger is published ({CHALLENGER_KEY} is empty): the learner publishes one once it has "
            "learned from traffic (LEARNER_ENABLED=true)"
        )
    try:
        challenger = ChallengerPolicy.from_json(raw)
    except ValueError as exc:
        raise PromotionError(f"the published challenger in {CHALLENGER_KEY} is malformed: {exc}") from None
    if challenger.version == UNIFORM_VERSION:
        raise PromotionError("the published challenger is the uniform one: there is nothing to promote")
    return challenger


def _published_challenger(settings: Settings) -> bytes | None:
    client = sync_redis(settings.redis_url, socket_connect_timeout=2.0)
    try:
        raw = client.get(CHALLENGER_KEY)
    except redis.RedisError as exc:
        raise PromotionError(
            f"cannot read the challenger: nothing answers at REDIS_URL={settings.redis_url} ({exc}); "
            "start the stack or pass --challenger FILE"
        ) from None
    finally:
        client.close()
    return raw if isinstance(raw, bytes) else None


def _default_version(challenger_version: str) -> str:
    today = clock.utc_datetime(clock.wall_ms()).strftime("%Y-%m-%d")
    return f"{today}-{_NOT_IN_A_VERSION.sub('-', challenger_version).strip('-.') or 'challenger'}"


def render(plan: Plan, result: Result | None, *, as_json: bool, dry_run: bool) -> str:
    if as_json:
        return json.dumps(as_dict(plan, result), indent=2)
    if dry_run or result is None:
        return f"dry run: nothing written\n{plan.describe()}\n\n{plan.diff}"
    done = f"committed {result.commit[:12]} on branch {result.branch}"
    if result.pull_request_url:
        return f"{done}\npull request #{result.pull_request_number}: {result.pull_request_url}"
    return f"{done}\nno pull request (GITHUB_TOKEN and GITHUB_REPOSITORY are not both set): push it yourself"


def as_dict(plan: Plan, result: Result | None = None) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "champion_version": plan.champion_version,
        "version": plan.version,
        "base": plan.base,
        "branch": plan.branch,
        "files": sorted(plan.files),
        "title": plan.title,
        "blockers": plan.blockers,
        "pull_request": None if plan.github is None else plan.github.repository,
        "diff": plan.diff,
    }
    if result is not None:
        summary["result"] = {
            "commit": result.commit,
            "pushed": result.pushed,
            "pull_request_url": result.pull_request_url,
            "pull_request_number": result.pull_request_number,
        }
    return summary
