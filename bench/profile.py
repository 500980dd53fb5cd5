"""Read a py-spy profile that ``BENCH_PROFILE=1`` wrote (bench/.work/profile-*.txt, --gil: only the thread
holding the GIL is sampled, so shares are shares of the worker's Python time). C code that releases the GIL
(OpenSSL loading CA certificates, libpq) does not show: compare with the benchmarks' worker CPU per step.

    python -m bench.profile bench/.work/profile-overhead.txt            # functions by inclusive share
    python -m bench.profile bench/.work/profile-overhead.txt _step_end  # what _step_end's time is spent in

``SPYARGS`` replaces ``--gil`` in py-spy's arguments: ``SPYARGS="--idle --threads"`` samples every thread, waiting
or not, so a thread's wall time shows (the worker's consumer thread spends most of it on Redis round trips).
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>[^:()]*)(?::\d+)?\)$")


def stacks(path: Path) -> list[tuple[list[str], int]]:
    """(frames as "function (file)", root first; sample count) per line of py-spy's raw format."""
    found = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue  # py-spy now and then writes a line of garbage (memory it read while it changed)
        frames = []
        for frame in stack.split(";"):
            match = _FRAME.match(frame)
            if match and match["file"].endswith("bench/instrument.py"):
                continue  # the timers' wrappers: show the wrapped function's callees directly
            frames.append(f"{match['name']} ({match['file'].split('site-packages/')[-1]})" if match else frame)
        found.append((frames, int(count)))
    return found


def main(argv: list[str]) -> int:
    data = stacks(Path(argv[0]))
    total = sum(count for _, count in data)
    shares: Counter[str] = Counter()
    if len(argv) == 1:
        for frames, count in data:
            for name in set(frames):
                shares[name] += count
        title = f"{total} samples; inclusive share of each function"
    else:
        inside = 0
        for frames, count in data:
            hits = [i for i, frame in enumerate(frames) if frame.startswith(argv[1] + " ")]
            if hits:
                inside += count
                shares[frames[hits[-1] + 1] if hits[-1] + 1 < len(frames) else "(itself)"] += count
        title = f"{argv[1]}: {inside} of {total} samples ({100 * inside / max(total, 1):.1f}%); its callees"
        total = inside
    print(title)
    for name, count in shares.most_common(40):
        print(f"{count:7d} {100 * count / max(total, 1):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
