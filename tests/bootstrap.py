"""Loaded with ``-p tests.bootstrap`` (pytest.ini) before Django is set up: the tests get embedded
servers of their own under .run/test, apart from the ones `make up` or `make demo` use."""

import os
from pathlib import Path

os.environ.setdefault("ORCH_RUN_DIR", str(Path(__file__).resolve().parent.parent / ".run" / "test"))
