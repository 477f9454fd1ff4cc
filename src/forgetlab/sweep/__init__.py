"""Sweeps at scale: a TOML grid of configurations and seeds, run in vectorised chunks on all
cores (or a Dask or Ray cluster), stored as a resumable Parquet dataset.

``load_spec`` reads a spec, ``make_plan`` chunks it, ``run_sweep`` executes and stores it,
``load_results`` returns the table (one row per run).
"""

from forgetlab.sweep.driver import SweepOutcome, run_sweep
from forgetlab.sweep.plan import ChunkRunner, make_plan
from forgetlab.sweep.spec import SweepSpec, load_spec, parse_spec
from forgetlab.sweep.store import StoreError, load_results

__all__ = ["ChunkRunner", "StoreError", "SweepOutcome", "SweepSpec", "load_results", "load_spec",
           "make_plan", "parse_spec", "run_sweep"]
