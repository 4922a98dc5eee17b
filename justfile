# Symphony operator commands: each is a thin call of the `symphony` CLI.
# Run `just --list` for the list; every report takes --json.

set positional-arguments

export PATH := justfile_directory() + "/.venv/bin:" + env_var("PATH")

# List the commands
default:
    @just --list

# Run the whole stack (Redis if needed, simulator, engine, proxy) until Ctrl-C
up *args:
    symphony up "$@"

# Start the stack, send traffic with the openai package, print a report from ClickHouse
demo *args:
    symphony demo "$@"

# Run the whole test suite
test *args:
    pytest "$@"

# App keys: `just keys create --app NAME [--budget-usd-day X] [--rpm N] [--models ...]`, `list`, `revoke PREFIX`
keys *args:
    symphony keys "$@"

# Read-only SQL against ClickHouse through the engine
sql *args:
    symphony sql "$@"

# Lint and type-check
check:
    ruff check .
    ruff format --check .
    mypy

# Provider by window: caps (policy and runtime), used, remaining, ETA to reset and to exhaustion
quotas-matrix *args:
    symphony quotas-matrix "$@"

# The share of decisions in the window with a trace (ClickHouse; Tempo too when TEMPO_ENDPOINT is set): `--window 1h [--json]`
trace-coverage *args:
    symphony trace-coverage "$@"

# Off-policy evaluation of the challenger per 24h window and task (IPS, SNIPS, DR), and the promotion verdict
learner-metrics *args:
    symphony learner-metrics "$@"

# Propose the learner's challenger as the next champion: `--dry-run` prints the policy diff; else a branch and a PR
learner-promote *args:
    symphony learner-promote "$@"

# Workload generator: traffic through the proxy at a rate, feedback from the simulator's ground truth
load *args:
    symphony load "$@"

# Benchmark (full runs by hand; CI runs --smoke): the proxy's added latency and CPU (Redis included), pinned and routed, beside the floor, LiteLLM and Portkey, 3 repeats
bench-proxy *args:
    python bench/proxy_overhead.py "$@"

# Benchmark: the proxy's overhead and CPU per request with tracing off and on (exporting to a local receiver), same run
bench-tracing *args:
    python bench/tracing_overhead.py "$@"

# Benchmark: quota reservations per second and p99 beside a plain INCR, same run
bench-quota *args:
    python bench/quota_reserve.py "$@"

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
