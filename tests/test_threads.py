"""The one-thread limit of the numeric libraries, checked in a fresh process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from soundalike.threads import VARIABLES

CHILD = """
import json, os
import numpy  # loaded before the limit: its BLAS pool is limited by threadpoolctl
from threadpoolctl import threadpool_info
before = [p["num_threads"] for p in threadpool_info()]
from soundalike.threads import one_math_thread
one_math_thread()
import faiss  # loaded after it: its OpenMP reads the variables
after = [[p["user_api"], p["num_threads"]] for p in threadpool_info()]
print(json.dumps({"before": before, "after": after, "env": {k: os.environ.get(k) for k in %r}}))
"""


def test_one_math_thread_limits_the_loaded_pools_and_those_loaded_later():
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    code = CHILD % (VARIABLES,)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["env"] == {k: "1" for k in VARIABLES}
    assert {api for api, _ in got["after"]} == {"blas", "openmp"}, got["after"]
    assert {n for _, n in got["after"]} == {1}, got["after"]
    if (os.cpu_count() or 1) > 1:  # the default the limit replaces: a thread per core
        assert max(got["before"]) > 1, got["before"]
