"""Windows over model inputs read from disk, whatever the number of buckets."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from conftest import ENV

from componentx.data.features import AGE_SCALE

READ_UNDER_A_LIMIT = """
import resource, sys
from pathlib import Path
import numpy as np, pandas as pd
from componentx.data.window_set import NpyRows, WindowSet
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
limit = 1024 if hard == resource.RLIM_INFINITY else min(1024, hard)
resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))  # soft and hard
folder, buckets = Path(sys.argv[1]), int(sys.argv[2])
index = pd.DataFrame({"vehicle_id": np.arange(buckets), "ref_time": 10.0, "class_label": 0,
                      "bucket": np.arange(buckets), "end_row": 4, "length": 3})
found = WindowSet([NpyRows(folder / f"{b}.npy") for b in range(buckets)],
                  [NpyRows(folder / f"{b}.time.npy") for b in range(buckets)],
                  index, np.zeros((buckets, 1)), 5)
np.save(sys.argv[3], found.arrays(np.arange(buckets)))
"""


def test_a_window_set_of_2100_buckets_reads_under_limits_of_1024_open_files(tmp_path):
    """2,100 buckets, two files each, read in a process whose soft and hard limits are 1,024
    open files (or the hard limit, if lower): every window, as written (a window set that
    kept its files open would fail at about the 1,022nd)."""
    buckets, rng = 2100, np.random.default_rng(0)
    inputs = rng.normal(size=(buckets, 4, 3)).astype(np.float32)
    for bucket in range(buckets):
        np.save(tmp_path / f"{bucket}.npy", inputs[bucket])
        np.save(tmp_path / f"{bucket}.time.npy", np.arange(4.0))
    result = subprocess.run([sys.executable, "-c", READ_UNDER_A_LIMIT, str(tmp_path),
                             str(buckets), str(tmp_path / "found.npy")], env=ENV,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    found = np.load(tmp_path / "found.npy")
    assert found.shape == (buckets, 5, 4)
    assert (found[:, :2] == 0).all()  # left padding
    np.testing.assert_array_equal(found[:, 2:, :3], inputs[:, 1:4])  # rows 1 to 3
    np.testing.assert_allclose(found[:, 2:, 3], np.tile((10.0 - np.arange(1.0, 4.0))
                                                        / AGE_SCALE, (buckets, 1)), rtol=1e-6)
