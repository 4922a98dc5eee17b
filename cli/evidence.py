"""``symphony evidence``: build an incident's evidence bundle on demand, or verify one.

``symphony evidence capture --decision-id ID`` asks the engine (which owns ClickHouse) to
build the bundle of that decision: its decision and attempts, the quota state, the status
pages of the providers involved, redacted, hashed and packaged (docs/evidence-bundle.md).
It is written under the engine's VAR_DIR/evidence and recorded in ``evidence_bundles``; with
``--fingerprint`` it also opens (or comments on) that incident's tickets.

``symphony evidence verify BUNDLE`` re-hashes every file of a bundle against its
datapackage.json and its provenance statement, checks datapackage-digest.json and every WARC
record's SHA-256 digests. Exit 0 when all match; 1 naming the first mismatch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sinks.evidence.service import TRIGGERS
from sinks.evidence.verify import BundleError, verify_bundle
from symphony import engine_client
from symphony.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    capture = actions.add_parser("capture", help="build a decision's evidence bundle (through the engine)")
    capture.add_argument(
        "--decision-id", required=True, help="the decision, as its events and traces name it"
    )
    capture.add_argument(
        "--trigger", choices=TRIGGERS, default="on_demand", help="why the bundle is made (default on_demand)"
    )
    capture.add_argument(
        "--fingerprint", default="", help="the incident's key: open its tickets, or comment on them"
    )
    capture.add_argument("--json", action="store_true", help="print the outcome as JSON")
    capture.set_defaults(run=capture_command)
    verify = actions.add_parser("verify", help="check a bundle's hashes, WARC digests and manifest")
    verify.add_argument("bundle", type=Path, help="the bundle (.wacz)")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    verify.set_defaults(run=verify_command)


def capture_command(settings: Settings, args: argparse.Namespace) -> int:
    request = {"decision_id": args.decision_id, "trigger": args.trigger}
    if args.fingerprint:
        request["fingerprint"] = args.fingerprint
    print(f"capturing evidence for decision {args.decision_id} ...", file=sys.stderr)
    outcome = engine_client.capture_evidence(settings.engine_url_as("admin"), request)
    if args.json:
        print(json.dumps(outcome, indent=2))
    else:
        print(f"bundle  {outcome['bundle']}\nsha256  {outcome['sha256']}")
        for url in outcome["tickets_opened"]:
            print(f"opened  {url}")
        for url in outcome["tickets_commented"]:
            print(f"comment {url}")
        for error in outcome["errors"]:
            print(f"error   {error}")
    return 1 if outcome["errors"] else 0


def verify_command(settings: Settings, args: argparse.Namespace) -> int:
    try:
        problems = verify_bundle(args.bundle)
    except BundleError as exc:
        problems = [str(exc)]
    if args.json:
        print(json.dumps({"bundle": str(args.bundle), "ok": not problems, "problems": problems}, indent=2))
    elif problems:
        print(f"FAIL {args.bundle}: {problems[0]}")
        for problem in problems[1:]:
            print(f"     {problem}")
    else:
        print(f"OK   {args.bundle}: every file, WARC digest and the manifest match")
    return 1 if problems else 0
