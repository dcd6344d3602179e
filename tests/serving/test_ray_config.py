"""The Ray Serve autoscaling config derived from a p99 objective, and the replicas' environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from mloncall.core.config import Settings
from mloncall.core.errors import InvalidInput
from mloncall.serving.ray_backend import replica_env
from mloncall.serving.ray_config import autoscaling_for, fixed_replicas, parse_address


def test_target_follows_littles_law_within_the_objective() -> None:
    plan = autoscaling_for(target_p99_seconds=0.05, replica_capacity_rps=400, min_replicas=2, max_replicas=8)
    # 50 ms x 400 req/s = 20 requests fit in the objective; half of it is the queue a replica may carry
    assert plan.target_ongoing_requests == 10.0 and plan.max_ongoing_requests == 20
    config = plan.autoscaling_config()
    assert config is not None
    assert (config["min_replicas"], config["initial_replicas"], config["max_replicas"]) == (2, 2, 8)
    assert config["downscale_delay_s"] >= 30 * config["upscale_delay_s"]
    assert set(plan.reasons) == {k for k in plan.to_dict() if k not in ("reasons", "autoscaling")}
    # a tighter objective means fewer requests per replica before Serve adds one
    tighter = autoscaling_for(target_p99_seconds=0.01, replica_capacity_rps=400)
    assert tighter.target_ongoing_requests < plan.target_ongoing_requests
    # a slow model still gets at least one request per replica, and room for one more
    slow = autoscaling_for(target_p99_seconds=0.1, replica_capacity_rps=12)
    assert slow.target_ongoing_requests == 1.0 and slow.max_ongoing_requests == 2


def test_fixed_count_without_an_objective() -> None:
    plan = fixed_replicas(3)
    assert plan.autoscaling_config() is None and (plan.min_replicas, plan.max_replicas) == (3, 3)
    same = autoscaling_for(target_p99_seconds=0.05, replica_capacity_rps=400, min_replicas=2, max_replicas=2)
    assert same.autoscaling_config() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"target_p99_seconds": 0.002, "replica_capacity_rps": 400},
            "cannot be met: one request alone takes 2.5 ms",
        ),
        ({"target_p99_seconds": 0.0, "replica_capacity_rps": 400}, "must be a positive duration"),
        ({"target_p99_seconds": float("nan"), "replica_capacity_rps": 400}, "must be a positive duration"),
        ({"target_p99_seconds": 0.05, "replica_capacity_rps": -1}, "--replica-capacity must be a positive"),
        ({"target_p99_seconds": 0.05, "replica_capacity_rps": 400, "min_replicas": 0}, "at least 1"),
        (
            {"target_p99_seconds": 0.05, "replica_capacity_rps": 400, "min_replicas": 5},
            "below --min-replicas 5",
        ),
        ({"target_p99_seconds": 0.05, "replica_capacity_rps": 400, "max_replicas": 5000}, "more than 1000"),
        (
            {"target_p99_seconds": 0.05, "replica_capacity_rps": 400, "upscale_delay_seconds": -1},
            "zero or more",
        ),
    ],
)
def test_impossible_or_bad_objectives_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        autoscaling_for(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("10.0.0.5:6379", ("10.0.0.5", 6379)),
        ("head.internal:6380", ("head.internal", 6380)),
        ("[::1]:6379", ("::1", 6379)),
    ],
)
def test_addresses(address: str, expected: tuple[str, int]) -> None:
    assert parse_address(address) == expected


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("nohost", "is not host:port"),
        (":6379", "is not host:port"),
        ("h:0", "is not host:port"),
        ("ray://h:10001", "Ray Client"),
    ],
)
def test_bad_addresses(address: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_address(address)


def test_replicas_open_the_same_installation(tmp_path: Path) -> None:
    config = tmp_path / "mloncall.toml"
    config.write_text("[serving]\nrefresh_seconds = 0.5\n")
    settings = Settings.load(env={"MLONCALL_HOME": str(tmp_path / "home")}, config_file=config)
    env = replica_env(settings, {"MLONCALL_SERVING_LOG_FLUSH_SECONDS": "2", "PATH": "/bin", "HOME": "/root"})
    assert env == {
        "MLONCALL_SERVING_LOG_FLUSH_SECONDS": "2",
        "MLONCALL_HOME": str(tmp_path / "home"),
        "MLONCALL_DB_URL": f"sqlite:///{tmp_path / 'home' / 'mloncall.db'}",
        "MLONCALL_ARTIFACTS": str(tmp_path / "home" / "artifacts"),
        "MLONCALL_CONFIG": str(config),
    }
