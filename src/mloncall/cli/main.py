"""The `mloncall` command: every runbook step an oncall engineer takes from a terminal.

Exit codes: 0 success; 1 a check ran and failed (gate, verify, acceptance); 2 bad input or usage; 3 not found;
4 conflict with the current state; 5 integrity failure (artifact missing or altered); 6 not authenticated or
not allowed; 7 a store is unreachable; 70 internal error (a bug: rerun with --debug and report it).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback

import click
import typer

from mloncall.access import cli as access_cli
from mloncall.access import cli_audit as audit_cli
from mloncall.access import cli_diagnose as diagnose_cli
from mloncall.access import cli_policy as access_policy_cli
from mloncall.alerts import cli as alerts_cli
from mloncall.cli import gc as gc_cli
from mloncall.cli import setup as setup_cli
from mloncall.core import console
from mloncall.core.errors import INTERNAL_EXIT_CODE, MloncallError
from mloncall.data import cli as data_cli
from mloncall.demo import cli as demo_cli
from mloncall.incidents import cli as incidents_cli
from mloncall.incidents import cli_oncall as oncall_cli
from mloncall.monitoring import cli as monitoring_cli
from mloncall.pipelines import cli as pipelines_cli
from mloncall.pipelines import cli_quarantine as quarantine_cli
from mloncall.registry import cli as registry_cli
from mloncall.rollout import cli as rollout_cli
from mloncall.runbooks import cli as runbooks_cli
from mloncall.scaling import cli as scaling_cli
from mloncall.stores.db import OUT_OF_CALENDAR, out_of_calendar
from mloncall.training import cli as training_cli

app = typer.Typer(
    name="mloncall",
    help="Runbooks that run: keep a production ML model healthy, from deployment to incident post-mortem.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state = {"debug": False}

# Typer may bring its own copy of click; catch usage errors, exits and aborts from whichever raised them.
_typer_click = (
    importlib.import_module("typer._click.exceptions") if importlib.util.find_spec("typer._click") else None
)
_USAGE_ERRORS: tuple[type[Exception], ...] = tuple(
    {click.ClickException, getattr(_typer_click, "ClickException", click.ClickException)}
)
_EXITS: tuple[type[BaseException], ...] = tuple({click.exceptions.Exit, typer.Exit})
_ABORTS: tuple[type[BaseException], ...] = tuple({click.exceptions.Abort, typer.Abort})


@app.callback()
def _root(
    debug: bool = typer.Option(
        False, "--debug", help="Show full tracebacks on errors.", envvar="MLONCALL_DEBUG"
    ),
) -> None:
    _state["debug"] = debug


def _mount(sub: typer.Typer, name: str | None = None) -> None:
    """Mount a domain's commands: as a group under `name`, or each at the top level."""
    if name is not None:
        app.add_typer(sub, name=name)
        return
    app.registered_commands.extend(sub.registered_commands)
    app.registered_groups.extend(sub.registered_groups)


# Each domain owns its commands; the root only mounts them, in the order `--help` lists them.
_mount(setup_cli.app)
_mount(training_cli.app)
_mount(registry_cli.app, "models")
_mount(data_cli.app, "datasets")
_mount(pipelines_cli.app, "pipeline")
_mount(access_cli.app, "tokens")
access_policy_cli.app.registered_commands.extend(diagnose_cli.app.registered_commands)
_mount(access_policy_cli.app, "access")
_mount(audit_cli.audit_app)
_mount(rollout_cli.app)
_mount(alerts_cli.app, "alerts")
_mount(alerts_cli.monitor_app, "monitor")
_mount(incidents_cli.app, "incident")
_mount(oncall_cli.oncall_app, "oncall")
_mount(monitoring_cli.app, "logs")
_mount(quarantine_cli.app, "quarantine")
_mount(scaling_cli.slo_app, "slo")
_mount(scaling_cli.app)
_mount(scaling_cli.scale_app, "scale")
_mount(runbooks_cli.app)
_mount(runbooks_cli.runbook_app, "runbook")
_mount(demo_cli.app)
_mount(gc_cli.app)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command, turn project errors into one line and a meaningful exit code."""
    code = run(argv)
    # Leave without running native libraries' exit-time destructors: pyarrow's Parquet thread pool can abort
    # the process at interpreter exit after all work is done (apache/arrow#34314), turning a success into
    # SIGABRT. Everything the command wrote is flushed first; the database work is already committed.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run(argv: list[str] | None = None) -> int:
    """Run the command and return its exit code (no process exit), for `main` and for callers in-process."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args or os.environ.get("MLONCALL_DEBUG", "") not in ("", "0", "false")
    try:
        command.main(args=args, prog_name="mloncall", standalone_mode=False)
    except _EXITS as exc:
        return int(getattr(exc, "exit_code", 0) or 0)
    except _ABORTS:
        console.err.print("aborted")
        return 130
    except _USAGE_ERRORS as exc:
        if type(exc).__name__ != "NoArgsIsHelpError":  # the help was already shown: nothing to add
            exc.show()  # type: ignore[attr-defined]
        return 2
    except MloncallError as exc:
        if debug:
            traceback.print_exc()
        console.err.print(f"[red]error:[/] {exc.message}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except KeyboardInterrupt:
        console.err.print("interrupted")
        return 130
    except Exception as exc:
        if out_of_calendar(exc):  # the user's date, past what the database's UTC columns hold
            console.err.print(f"[red]error:[/] {OUT_OF_CALENDAR}", highlight=False, soft_wrap=True)
            return 2
        if debug:
            traceback.print_exc()
        else:
            console.err.print(
                f"[red]internal error:[/] {type(exc).__name__}: {exc} (rerun with --debug for the traceback)",
                highlight=False,
            )
        return INTERNAL_EXIT_CODE
    return 0
