# Symphony operator commands: each is a thin call of the `symphony` CLI.
# Run `just --list` for the list; every report takes --json.

set positional-arguments

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# List the commands
default:
    @just --list

# `symphony up` stops the stack on Ctrl-C and SIGTERM itself: no-exit-message keeps just from calling that an error.

# Run the whole stack (Redis if needed, simulator, engine, proxy) until Ctrl-C
[no-exit-message]
up *args:
    symphony up "$@"

# Start the stack, send traffic with the openai package, print a report from ClickHouse
[no-exit-message]
demo *args:
    symphony demo "$@"

# Run the whole test suite on TEST_WORKERS processes (2; 0 runs it in this one), after installing Debian's
# Alertmanager if it is missing (the SLO alert test runs one)
test *args: test-deps
    pytest -n "${TEST_WORKERS:-2}" "$@"

# What the tests need from outside PyPI: Debian's prometheus-alertmanager (apt, as root or with sudo)
test-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v prometheus-alertmanager >/dev/null && exit 0
    as_root=$([ "$(id -u)" = 0 ] || echo sudo)
    echo "installing prometheus-alertmanager (apt-get) for the SLO alert test"
    $as_root apt-get install -y -q prometheus-alertmanager >/dev/null \
        || { $as_root apt-get update -q && $as_root apt-get install -y -q prometheus-alertmanager >/dev/null; }

# App keys: `just keys create --app NAME [--budget-usd-day X] [--rpm N] [--models ...]`, `list`, `revoke PREFIX`
keys *args:
    symphony keys "$@"

# Every catalog model (CATALOG_FILE): served or not and why: `just models [--needs tools,json_schema] [--json]`
models *args:
    symphony models "$@"

# Read-only SQL against ClickHouse through the engine
sql *args:
    symphony sql "$@"

# Lint and type-check: ruff check, ruff format --check, mypy (strict); takes no arguments but --help
check *args:
    #!/usr/bin/env bash
    set -euo pipefail
    case "${1-}" in
        -h|--help) echo "Usage: just check"; echo "Lint and type-check the repository: ruff check ., ruff format --check ., mypy (strict)"; exit 0;;
        "") ;;
        *) echo "just check takes no arguments (see: just check --help)" >&2; exit 2;;
    esac
    set -x
    ruff check .
    ruff format --check .
    mypy

# Every cap by window (providers, their models, apps' budgets): caps (policy and runtime), used, remaining, time to reset and to exhaustion where the burn fills the window first
quotas-matrix *args:
    symphony quotas-matrix "$@"

# The plan of the queued jobs per provider and window: `just scheduler-plan --horizon 12h --dry-run [--json]`
scheduler-plan *args:
    symphony scheduler-plan "$@"

# Utilisation per provider window, overflow tokens and cost, deadline misses, the clairvoyant optimum and the deltas, from ClickHouse: `--baseline last_week --compare this_week [--json]` (or START..END in UTC)
scheduler-report *args:
    symphony scheduler-report "$@"

# Two simulated weeks (scheduler off, then on) into a ClickHouse of their own, ending with their scheduler-report and the acceptance; `--days 2` for a short run
scheduler-weeks *args:
    symphony scheduler-weeks "$@"

# The share of decisions in the window with a trace (ClickHouse; Tempo too when TEMPO_ENDPOINT is set): `--window 1h [--json]`
trace-coverage *args:
    symphony trace-coverage "$@"

# Off-policy evaluation of the challenger per 24h window and task (IPS, SNIPS, DR), and the promotion verdict
learner-metrics *args:
    symphony learner-metrics "$@"

# Propose the learner's challenger as the next champion: `--dry-run` prints the policy diff; else a branch and a PR
learner-promote *args:
    symphony learner-promote "$@"

# A simulated week (7 days in about 6 minutes) on a stack of its own: traffic, the learner, its report and the promotion's diff; `--promote` commits it
learner-week *args:
    symphony learner-week "$@"

# The go-live pack: a fresh two-week replay, the scheduler weeks, the perf and chaos gates, then the six acceptances PASS/FAIL with their artifacts (runs/mvp3/); exits 1 on any FAIL
mvp3-validate *args:
    symphony mvp3-validate "$@"

# The release pack: checks the version, CHANGELOG, docs/release-v3.0.0.md and that mvp3-validate passed, lists the artifacts; without --dry-run tags v3.0.0 and drafts the GitHub Release
release *args:
    symphony release "$@"

# The rollback drill: traffic split 0, learner off, scheduler off, the previous champion, each applied live under load and timed on every proxy replica (< 5 s), no event lost; PASS/FAIL each
rollback-drill *args:
    symphony rollback-drill "$@"

# The performance gate: k6 at a constant rate against /v1/route/execute on a stack of its own; thresholds from policies/gates.v1.json; exits 1 on a breach
perf-run *args:
    symphony perf-run "$@"

# The chaos gate: 429 storm, 5xx burst, slow first byte, hanging and down providers, all partly failing, a Redis restart, an engine crash; PASS/FAIL each (`--short` for CI)
chaos-run *args:
    symphony chaos-run "$@"

# Workload generator: traffic through the proxy at a rate, feedback from the simulator's ground truth
load *args:
    symphony load "$@"

# Benchmark (full runs by hand; CI runs --smoke): the proxy's added latency and CPU (Redis included), pinned and routed, beside the floor, LiteLLM and Portkey, 3 repeats
bench-proxy *args:
    python bench/proxy_overhead.py "$@"

# Benchmark: the proxy's overhead and CPU per request with tracing off and on (exporting to a local receiver), same run
bench-tracing *args:
    python bench/tracing_overhead.py "$@"

# Benchmark: a request's tracing calls, µs of CPU warm and cold, the working tree against --baseline (HEAD), same run
bench-tracing-calls *args:
    python bench/tracing_calls.py "$@"

# Benchmark: the event loop's instructions per request with tracing off and on (callgrind), a figure load cannot move
bench-tracing-instructions *args:
    python bench/tracing_instructions.py "$@"

# Benchmark: the proxy's instructions per request beside the floor's (callgrind, tracing off), same run
bench-proxy-instructions *args:
    python bench/proxy_instructions.py "$@"

# Benchmark: the proxy's OTLP encoding of its spans beside the SDK's encoder, same run
bench-otlp *args:
    python bench/otlp_encoding.py "$@"

# Benchmark: quota reservations per second and p99 beside a plain INCR, same run
bench-quota *args:
    python bench/quota_reserve.py "$@"

# Benchmark: Redis's instructions per quota grant (callgrind), alone and in batches, beside an INCR
bench-quota-instructions *args:
    python bench/quota_instructions.py "$@"

# Benchmark: events/s from the stream into ClickHouse (every event type; 1 and 2 workers; engine flow with recovery) and freshness p50/p99
bench-dataflow *args:
    python bench/dataflow_throughput.py "$@"

# Benchmark: events/s through the ingest flow with the learner branch beside the same flow without it, and the learner step alone (3 repeats)
bench-learner *args:
    python bench/learner_throughput.py "$@"

# Benchmark: planning time for 1,000 and 10,000 queued jobs (MILP and greedy) and the greedy plan's gap
bench-scheduler *args:
    python bench/scheduler_plan.py "$@"

# Live rollback: `just flags --learner off`, `--traffic-split 0`, `--reset`; no options prints them
flags *args:
    symphony flags "$@"

# The console's Node packages (console/node_modules), installed from console/package-lock.json when it changed (npm ci)
console-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    cd console
    stamp=node_modules/.installed-from-lock
    if [ "$(cat "$stamp" 2>/dev/null)" != "$(sha256sum package-lock.json)" ]; then
        echo "console: npm ci (Node $(node --version))" >&2
        PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >&2
        sha256sum package-lock.json > "$stamp"
    fi

# Generate the MUI theme, Tailwind's @theme and the shadcn variables from tokens.json (Style Dictionary) into console/src/generated
tokens-build: console-deps
    cd console && node scripts/build-tokens.mjs

# Fail when console/src/generated differs from what tokens.json generates (run `just tokens-build` and commit)
tokens-check: console-deps
    #!/usr/bin/env bash
    set -euo pipefail
    fresh=$(mktemp -d); trap 'rm -rf "$fresh"' EXIT
    (cd console && node scripts/build-tokens.mjs "$fresh")
    diff -ru console/src/generated "$fresh" || { echo "tokens drift: the generated theme differs from tokens.json; run: just tokens-build" >&2; exit 1; }

# Build the console into dataflows/console_assets (shipped with the package: Python alone serves it at /console)
console-build: tokens-build
    cd console && npx tsc --noEmit -p . && npx vite build --logLevel warn

# Fail when dataflows/console_assets differs from a fresh build of console/ (run `just console-build` and commit)
console-check: tokens-check
    #!/usr/bin/env bash
    set -euo pipefail
    fresh=$(mktemp -d); trap 'rm -rf "$fresh"' EXIT
    (cd console && npx tsc --noEmit -p . && npx vite build --logLevel warn --outDir "$fresh")
    diff -ru dataflows/console_assets "$fresh" || { echo "console drift: the built console differs from console/; run: just console-build" >&2; exit 1; }

# What the browser tests need from outside npm: Debian's chromium and the DejaVu fonts the baselines were drawn with (apt, as root or with sudo)
browser-deps:
    #!/usr/bin/env bash
    set -euo pipefail
    command -v chromium >/dev/null && [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] && exit 0
    as_root=$([ "$(id -u)" = 0 ] || echo sudo)
    echo "installing chromium and fonts-dejavu-core (apt-get) for the console's browser tests" >&2
    $as_root apt-get install -y -q chromium fonts-dejavu-core >/dev/null \
        || { $as_root apt-get update -q && $as_root apt-get install -y -q chromium fonts-dejavu-core >/dev/null; }

# Visual regression: every console view, light and dark, against the committed baselines; `--update` writes new ones (commit them through a reviewed change)
visual-baseline *args: console-deps browser-deps
    #!/usr/bin/env bash
    set -euo pipefail
    case "${1-}" in
        -h|--help) echo "Usage: just visual-baseline [--update]"; echo "Compare the console's views (light and dark) with console/tests/__screenshots__; --update rewrites the baselines"; exit 0;;
        --update) update=--update-snapshots;;
        "") update=;;
        *) echo "just visual-baseline takes only --update (see: just visual-baseline --help)" >&2; exit 2;;
    esac
    cd console && npx playwright test tests/visual.spec.ts tests/tokens.spec.ts $update

# The console's browser tests in Debian's chromium: visual baselines, tokens reaching MUI and shadcn, the live stack (ETA clocks, a failing provider) and the token-change drill
console-test: console-deps browser-deps
    cd console && npx playwright test
    cd console && node tests/token-change.mjs

# Lighthouse accessibility audit of every console view (light and dark) on the built console; fails below 95; reports in runs/gates/a11y/
a11y-audit: console-deps browser-deps
    cd console && node scripts/a11y-audit.mjs
