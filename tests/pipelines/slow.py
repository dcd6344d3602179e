"""A transform that waits while a flag file exists: a stage that is mid-way when the test kills its process.

Run as a script (`python -m tests.pipelines.slow HOME`) it runs the Iris pipeline in that installation.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd

from mloncall.pipelines import transforms


@transforms.register("wait_while_flagged")
def wait_while_flagged(frame: pd.DataFrame, *, flag: str) -> pd.DataFrame:
    while Path(flag).exists():
        time.sleep(0.05)
    return frame


if __name__ == "__main__":
    from mloncall.core.config import Settings
    from mloncall.pipelines import service
    from mloncall.stores.context import Context

    ctx = Context.from_settings(Settings.load(env={"MLONCALL_HOME": sys.argv[1]}))
    ctx.open()
    service.run(ctx, "iris-ingest", actor="cron")
