"""Registry figures: registration time, and `verify` throughput against raw sha256 over the same bytes.

Anchor: hashing the same files' bytes already in memory with hashlib, i.e. the floor for any verifier;
the ratio shows what reading through the artifact store and comparing with the records costs on top.
Run: .venv/bin/python bench/bench_registry.py
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mloncall.core.config import Settings
from mloncall.registry import service as registry
from mloncall.stores.context import Context
from mloncall.training import service as training


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": str(Path(tmp) / "home")}))
        ctx.init()
        for algorithm in ("logistic_regression", "random_forest"):
            train_s, register_s = [], []
            for seed in range(3):
                start = time.perf_counter()
                run = training.train(
                    ctx=ctx,
                    name=f"bench-{algorithm.replace('_', '-')}",
                    algorithm=algorithm,
                    seed=seed,
                    created_by="bench",
                )
                train_s.append(time.perf_counter() - start)
                register_s.append(run.seconds)
            mv = run.model_version
            size_mb = sum(f.size for f in mv.files) / 1e6
            verify_s = []
            for _ in range(5):
                verify_s.append(registry.verify(store=ctx.store, model_version=mv).seconds)
            blobs = [ctx.store.get_bytes(f.key) for f in mv.files]
            hash_s = []
            for _ in range(5):
                start = time.perf_counter()
                for b in blobs:
                    hashlib.sha256(b).hexdigest()
                hash_s.append(time.perf_counter() - start)
            v, h = statistics.median(verify_s), statistics.median(hash_s)
            print(
                f"{algorithm}: train+register {statistics.median(train_s) * 1000:.0f} ms "
                f"({size_mb:.2f} MB of artifacts, {len(mv.files)} files)"
            )
            print(
                f"  verify  {v * 1000:.2f} ms = {v / size_mb * 1000:.2f} ms/MB   "
                f"anchor in-memory sha256 {h / size_mb * 1000:.2f} ms/MB   ratio {v / h:.1f}x"
            )
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
