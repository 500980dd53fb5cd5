#!/usr/bin/env bash
# make demo: migrate, start an agent worker, run the research workflow with live progress, clean up.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null || true
  stop_services
}
trap cleanup EXIT INT TERM
$PY manage.py migrate --verbosity 0
# The shipped policy (approvals.yaml) gates the synthesis step: the demo shows the pause, and --auto-approve
# approves it as "cli-approver" so the run is unattended (leave it out to approve in the admin yourself).
# Agents answer offline (no API key needed) after ~1.5 s, so the parallel branches are easy to see.
export OFFLINE_LATENCY_MS=${OFFLINE_LATENCY_MS:-1500}
.venv/bin/celery -A config worker -Q agents,scheduler,notify -P threads -c 16 -n demo@%h \
  --loglevel INFO > .run/demo-worker.log 2>&1 &
worker_pid=$!
echo "Running the research workflow (worker log: .run/demo-worker.log)"
LOG_LEVEL=WARNING $PY manage.py orchestrate "${DEMO_REQUEST:-How do solid-state batteries compare with lithium-ion ones?}" \
  --template research --follow --timeout 120 --auto-approve
# memory: the same question again. Each step's context now recalls the first run's episodes (the lines
# "recalled episode of plan ..."), assembled within the agent's token budget (memory/context.py).
echo
echo "Running the research workflow again: this time its steps recall the first run from memory"
LOG_LEVEL=WARNING $PY manage.py orchestrate "${DEMO_REQUEST:-How do solid-state batteries compare with lithium-ion ones?}" \
  --template research --follow --timeout 120 --auto-approve
# issue 10: the research template grows at run time. Both runs above are complex ("compare"): the rule
# complex_query_detected spawned search and reasoning in parallel, then synthesis. A simple query takes the
# other rule, simple_query_detected: one direct answer.
echo
echo "Running the research workflow with a simple query: its rules spawn a direct answer instead"
LOG_LEVEL=WARNING $PY manage.py orchestrate "${DEMO_SIMPLE_REQUEST:-What is a battery?}" \
  --template research --follow --timeout 120 --auto-approve
