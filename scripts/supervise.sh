#!/usr/bin/env bash
# supervise.sh COMMAND...: run COMMAND, and run it again whenever it exits on its own (as compose's
# "restart: unless-stopped" does), after a short pause; SIGTERM / SIGINT stop it and the command for good.
# make up runs the workers, beat and Flower under it (Procfile), so a worker that dies is back in seconds.
child=""
stop() { [ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child"; exit 0; }
trap stop TERM INT
while true; do
  "$@" &
  child=$!
  wait "$child"
  status=$?
  echo "supervise: '$1' exited with status $status; starting it again in 2 s" >&2
  sleep 2
done
