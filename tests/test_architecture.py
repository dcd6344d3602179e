"""The structure is checked, not hoped for: every module below the interfaces is under the contracts."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "mloncall"
DOMAINS = (
    "access",
    "alerts",
    "data",
    "incidents",
    "monitoring",
    "pipelines",
    "registry",
    "rollout",
    "scaling",
    "serving",
    "training",
)
#: Orchestration packages whose modules are held to the same contract as a domain's.
CHECKED_LIKE_DOMAINS = ("runbooks",)
#: A domain's interface rooms: thin HTTP routes, thin commands and what the commands print. A room grown too
#: big is split by topic into `cli_<topic>.py`, `views_<topic>.py` or `render_<topic>.py`.
INTERFACE_ROOMS = {"views", "cli", "render"}


def _is_interface_room(stem: str) -> bool:
    return stem in INTERFACE_ROOMS or stem.split("_", 1)[0] in INTERFACE_ROOMS


def _contract(name: str) -> configparser.SectionProxy:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    return config[f"importlinter:contract:{name}"]


def _modules(option: str, contract: str) -> set[str]:
    return {line.strip() for line in _contract(contract)[option].splitlines() if line.strip()}


def test_every_domain_module_but_views_and_commands_is_forbidden_the_interfaces() -> None:
    expected = {"mloncall.core", "mloncall.stores"}
    for domain in DOMAINS + CHECKED_LIKE_DOMAINS:
        for path in (PACKAGE / domain).glob("*.py"):
            if not _is_interface_room(path.stem) and path.stem != "__init__":
                expected.add(f"mloncall.{domain}.{path.stem}")
    assert _modules("source_modules", "services-do-not-know-interfaces") == expected


def test_every_domain_is_in_the_floors_and_every_command_module_independent() -> None:
    floors = _contract("floors")["layers"]
    domains_line = next(line for line in floors.splitlines() if "mloncall.access" in line)
    assert {name.strip() for name in domains_line.split(":")} == {f"mloncall.{d}" for d in DOMAINS}
    commands = {f"mloncall.{p.parent.name}.{p.stem}" for p in PACKAGE.glob("*/cli*.py")}
    assert commands <= _modules("modules", "cli-modules-independent")
    views = {f"mloncall.{p.parent.name}.{p.stem}" for p in PACKAGE.glob("*/views*.py")}
    assert views == _modules("modules", "views-independent")


def _source(module: str) -> str:
    return (PACKAGE / Path(*module.split(".")[1:])).with_suffix(".py").read_text()


def test_every_split_interface_room_is_held_like_its_room() -> None:
    """`cli_<topic>` and `views_<topic>` are matched by no wildcard: each is named in the contracts."""
    split = {
        f"mloncall.{p.parent.name}.{p.stem}"
        for room in ("cli", "views", "render")
        for p in PACKAGE.glob(f"*/{room}_*.py")
    }
    forbidden = _modules("forbidden_modules", "services-do-not-know-interfaces")
    assert split <= forbidden
    ignored = {line.split("->")[0].strip() for line in _contract("floors")["ignore_imports"].splitlines()}
    # the floors' ignore line is what lets a command module use `cli.support`, a view `api.deps`
    uses_interfaces = {
        m for m in split
        if "mloncall.cli.support" in (text := _source(m)) or "mloncall.api.deps" in text
    }  # fmt: skip
    assert uses_interfaces <= ignored


def test_no_module_of_the_project_is_imported_through_importlib() -> None:
    hidden = re.compile(r"import_module\(\s*f?[\"']mloncall|__import__\(\s*f?[\"']mloncall")
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if hidden.search(p.read_text())]
    assert offenders == []
