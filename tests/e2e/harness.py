"""The local cluster harness (hack/cluster/cluster.py), importable from the tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "hack" / "cluster"))

import cluster as local_cluster

__all__ = ["local_cluster"]
