#!/usr/bin/env bash
# make up: the whole stack in the foreground until Ctrl-C (Procfile, run by honcho), on the embedded servers
# unless DATABASE_URL / REDIS_URL point elsewhere. Embedded servers started here are stopped on the way out.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
trap stop_services EXIT
$PY manage.py migrate --verbosity 0
$PY manage.py collectstatic --noinput --verbosity 0
export PATH="$PWD/.venv/bin:$PATH"
echo "web http://127.0.0.1:${WEB_PORT:-8000}  (admin /admin/, API /api/, docs /api/docs/, health /health)"
echo "flower http://127.0.0.1:5555   stop with Ctrl-C"
.venv/bin/honcho start -f Procfile
