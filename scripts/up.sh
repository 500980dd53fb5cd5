#!/usr/bin/env bash
# make up: the whole stack in the foreground until Ctrl-C (Procfile, run by honcho).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" .run
eval "$($PY -m config.services start)"
$PY manage.py migrate --verbosity 0
$PY manage.py collectstatic --noinput --verbosity 0
export PATH="$PWD/.venv/bin:$PATH"
echo "web http://127.0.0.1:8000  (admin /admin/, API /api/, docs /api/docs/, health /health)  flower http://127.0.0.1:5555"
exec .venv/bin/honcho start -f Procfile
