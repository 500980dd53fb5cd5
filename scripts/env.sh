# Sourced by the make scripts: the runtime dir the embedded servers need, and whether they were up already
# (servers a script starts, it stops on the way out; servers it found running, it leaves running).
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/runtime-$(id -u)}"
mkdir -p "$XDG_RUNTIME_DIR" .run
PY=.venv/bin/python
was_up=$($PY -m config.services status | grep -c " up" || true)
eval "$($PY -m config.services start)"
stop_services() { [ "$was_up" = "0" ] && $PY -m config.services stop || true; }
