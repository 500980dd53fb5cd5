#!/usr/bin/env bash
# Print the path of a Python >= 3.12: python3.13 / python3.12 / python3 on PATH, else one pyenv installed.
ok() { "$1" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }
for candidate in python3.14 python3.13 python3.12 python3; do
  path=$(command -v "$candidate" 2>/dev/null) && ok "$path" && { echo "$path"; exit 0; }
done
root=$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")
for path in $(ls -d "$root"/versions/3.1[2-9]*/bin/python3 2>/dev/null | sort -rV); do
  ok "$path" && { echo "$path"; exit 0; }
done
echo "No Python >= 3.12 found: install python3.12 or newer (or 'pyenv install 3.12') and try again." >&2
exit 1
