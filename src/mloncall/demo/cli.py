"""`mloncall demo`: an oncall story told by running it, on the embedded defaults.

Against a real `mloncall server` on localhost with steady client traffic (and feedback labels):
1. train iris-classifier v1 and deploy it;
2. runbook 2: new samples arrive, retrain, the gate passes, canary rollout through every step, promoted,
   runbook-1 acceptance checked from live traffic;
3. a bad v3 (trained on corrupted labels) goes out as a canary: analysis catches it and aborts, traffic
   never stops;
4. runbook 3: drift is injected into the traffic, the drift alert goes pending then firing, `investigate`
   assesses it and the alert is closed with its root cause;
5. a summary with where the report and logs are and what to try next.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from mloncall.cli.support import installation
from mloncall.core import clock, console
from mloncall.core.config import Settings
from mloncall.core.errors import Conflict
from mloncall.demo.scene import ACTOR, MODEL, Pace, Story
from mloncall.rollout.render import print_acceptance
from mloncall.stores.context import Context

app = typer.Typer()

MARKER = ".mloncall-demo"


def _view(story: Story, traffic: Any) -> Group:
    t = Table(show_header=False, box=None, pad_edge=False)
    t.add_column(width=3)
    t.add_column()
    icons = {"running": "[yellow]…[/]", "done": "[green]✓[/]", "caught": "[green]✓[/]", "failed": "[red]✗[/]"}
    for title, status, detail in story.stages:
        t.add_row(
            icons.get(status, status), f"[bold]{title}[/]" + (f"\n  [dim]{detail}[/]" if detail else "")
        )
    parts: list[Any] = [t]
    if traffic is not None:
        mix = ", ".join(f"v{v} {share:.0%}" for v, share in traffic.mix().items()) or "-"
        parts.append(
            Panel(
                f"requests {traffic.sent}   failed {len(traffic.failures)}   serving now: {mix}"
                + (f"\n{story.note}" if story.note else ""),
                title="live traffic",
                title_align="left",
            )
        )
    return Group(*parts)


@contextmanager
def _live(story: Story, get_traffic: Callable[[], Any], enabled: bool) -> Iterator[Callable[[], None]]:
    if not enabled:
        yield lambda: None
        return
    with Live(
        _view(story, get_traffic()), console=console.out, refresh_per_second=4, transient=False
    ) as live:
        yield lambda: live.update(_view(story, get_traffic()))


def _prepare_home(settings: Settings, reset: bool) -> None:
    """Start from a clean installation: a previous demo's home is wiped, anyone else's is left alone."""
    home = settings.home
    if home.exists() and any(home.iterdir()):
        if (home / MARKER).exists() or reset:
            shutil.rmtree(home)
        else:
            raise Conflict(
                f"{home} already holds an installation: run the demo with a fresh MLONCALL_HOME, "
                "or pass --reset to wipe it"
            )
    home.mkdir(parents=True, exist_ok=True)
    (home / MARKER).write_text("created by `mloncall demo`; the next demo run wipes this folder\n")


@app.command()
def demo(
    fast: bool = typer.Option(False, "--fast", help="Short steps and waits (used by the test suite)."),
    reset: bool = typer.Option(
        False, "--reset", help="Wipe MLONCALL_HOME first even if the demo did not create it."
    ),
    seed: int = typer.Option(42, help="Seed for training and the simulated traffic."),
    keep_running: bool = typer.Option(
        False,
        "--keep-running",
        help="At the end, leave the server up and print the dashboard's URL (Ctrl-C stops).",
    ),
) -> None:
    """Play the oncall story end to end against a live local server (about 2 minutes; --fast: under 1)."""
    # imported when the command runs: the story pulls in training, serving and the monitors, which every
    # other `mloncall` command would otherwise load at start-up
    from mloncall.demo.story import play

    settings = Settings.load()
    if not settings.db_url.startswith("sqlite") or "://" in settings.artifacts:
        raise Conflict("the demo runs on the embedded defaults: unset MLONCALL_DB_URL and MLONCALL_ARTIFACTS")
    _prepare_home(settings, reset)
    with installation(create=True) as ctx:  # the demo owns its home: it sets it up as `init` does
        story = Story()
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="mloncall-demo-") as tmp:
            holder: dict[str, Any] = {}
            with _live(story, lambda: holder.get("traffic"), enabled=True) as refresh:
                summary = play(ctx=ctx, story=story, pace=Pace.of(fast), seed=seed, workdir=Path(tmp),
                               holder=holder, refresh=refresh)  # fmt: skip
        console.out.print()
        summary["seconds"] = round(time.monotonic() - started, 1)
        _print_summary(ctx, summary)
        if keep_running:
            _keep_serving(ctx)


def _keep_serving(ctx: Context) -> None:
    """Serve the installation until interrupted, with a dashboard token printed once for logging in."""
    from mloncall.access import service as access
    from mloncall.demo.traffic import LocalServer

    with ctx.db.session() as session:
        _, secret = access.create_token(
            session=session, principal_name=ACTOR, description="dashboard login printed by the demo"
        )
    server = LocalServer(dict(os.environ)).start()
    console.out.rule("[bold]the dashboard")
    console.out.print(f"dashboard      {server.base}/")
    console.out.print(f"log in with    token {secret}")
    stopped = threading.Event()
    # Ctrl-C, or SIGTERM from whatever started the demo; set here, since a parent may have left SIGINT ignored
    previous = {sig: signal.signal(sig, lambda *_: stopped.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    console.out.print("the server stays up until Ctrl-C", soft_wrap=True)
    try:
        while not stopped.is_set() and server.proc is not None and server.proc.poll() is None:
            stopped.wait(0.5)
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_summary(ctx: Context, summary: dict[str, Any]) -> None:
    console.out.rule("[bold]what happened")
    for line in summary.get("lines", []):
        console.out.print(f"• {line}")
    if summary.get("acceptance"):
        print_acceptance(summary["acceptance"])
    console.out.print(f"\ndone in {summary['seconds']} s at {clock.now():%H:%M:%S} UTC")
    console.out.rule("[bold]where things are")
    console.out.print(f"installation   {ctx.settings.home}")
    for label, path in summary.get("paths", {}).items():
        console.out.print(f"{label:<14} {path}")
    console.out.rule("[bold]try next")
    env = f"MLONCALL_HOME={ctx.settings.home}"
    for cmd in (
        "mloncall models list",
        f"mloncall models show {MODEL}@production",
        f"mloncall rollout history {MODEL}",
        "mloncall alerts list",
        "mloncall runbook runs",
        "mloncall incident list",
        "mloncall server          # then open http://127.0.0.1:8000/ (the dashboard) or /docs",
    ):
        console.out.print(f"  {env} {cmd}")
