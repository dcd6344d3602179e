"""The inference app as a Ray Serve application, for serving on more than one machine.

Each Serve replica runs the same `InferenceApp` as a local worker (through `serve.ingress`), so the routes,
the input validation, the prediction log in the artifact store and the routing table it polls are the
local server's: a canary weight or an abort written through the normal rollout path reaches the replicas
within their refresh interval. The replicas find the installation through the environment they are given
(`replica_env`): every node must reach its database and artifact store, and have mloncall installed.

Ray is an optional extra (`pip install 'mloncall[ray]'`): it is imported here, when a deployment starts,
never when the package is imported.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from mloncall.core.config import Settings
from mloncall.core.errors import ClusterUnavailable, InvalidInput
from mloncall.core.net import unanswered
from mloncall.serving.ray_config import APP_NAME, RayAutoscaling, RayServeOptions, parse_address

log = logging.getLogger("mloncall.serving.ray")

DEPLOYMENT_NAME = "inference"
_POLL_S = 0.5
_GCS_PROBE = "/ray.rpc.NodeInfoGcsService/GetClusterId"


def import_ray() -> tuple[Any, Any]:
    """`ray` and `ray.serve`, or InvalidInput saying how to install them."""
    try:
        import ray
        from ray import serve
    except ImportError:
        raise InvalidInput(
            "the ray backend needs Ray Serve: pip install 'mloncall[ray]' (on every node of the cluster too)"
        ) from None
    return ray, serve


def probe(address: str, timeout: float) -> None:
    """ClusterUnavailable unless the head at `address` answers within `timeout` seconds.

    Ray's own client retries a silent address for about 40 s before it gives up; this asks first, with a
    plain TCP connection and then an HTTP/2 handshake with the head's gRPC server.
    """
    host, port = parse_address(address)
    deadline = time.monotonic() + timeout
    why = unanswered(host, port, timeout)
    if why is not None:
        raise ClusterUnavailable(
            f"the Ray cluster at {address} does not answer: {why}; is `ray start --head --port {port}` running "
            "there?"
        )
    if os.environ.get("RAY_USE_TLS", "0") not in ("", "0"):
        return  # the call below is plaintext; a TLS head answered the TCP connection
    import grpc

    # One call of the head's GCS, by its gRPC path and an empty request (no Ray import needed): a proxy or
    # another server on that port answers it with an error, a silent one not at all.
    channel = grpc.insecure_channel(f"{host}:{port}")
    try:
        get_cluster_id = channel.unary_unary(_GCS_PROBE)
        get_cluster_id(b"", timeout=max(0.1, deadline - time.monotonic()))
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return  # a head with token auth: joining it (with the token) says whether ours is right
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise ClusterUnavailable(
                f"{address} accepts connections but does not answer as a Ray head within {timeout:g} s"
            ) from None
        raise ClusterUnavailable(
            f"{address} answers but is not a Ray head ({code.name.lower()}: {exc.details() or 'no details'})"
        ) from None
    finally:
        channel.close()


def replica_env(settings: Settings, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment each replica opens the installation from: its settings resolved to absolute
    values, and every `MLONCALL_*` override of this process (serving limits, the token gate)."""
    environ = os.environ if environ is None else environ
    env = {k: v for k, v in environ.items() if k.startswith("MLONCALL_")}
    env.update(
        MLONCALL_HOME=str(settings.home),
        MLONCALL_DB_URL=settings.db_url,
        MLONCALL_ARTIFACTS=settings.artifacts,
    )
    if settings.config_file is not None:
        env["MLONCALL_CONFIG"] = str(settings.config_file.resolve())
    return env


class InferenceReplica:
    """One Serve replica: `serve.ingress` gives it the inference app, built in the replica from its
    environment (`app_from_env`), whose lifespan loads the routed models and flushes the log at the end."""


def application(serve: Any, scaling: RayAutoscaling, options: RayServeOptions, env: dict[str, str]) -> Any:
    """The bound Serve application: the inference app behind `scaling`'s replicas."""
    from mloncall.serving.app import app_from_env

    settings: dict[str, Any] = {
        "name": DEPLOYMENT_NAME,
        "max_ongoing_requests": scaling.max_ongoing_requests,
        "ray_actor_options": {"num_cpus": options.replica_cpus, "runtime_env": {"env_vars": env}},
        "graceful_shutdown_timeout_s": 10,
    }
    autoscaling = scaling.autoscaling_config()
    if autoscaling is None:
        settings["num_replicas"] = scaling.min_replicas
    else:
        settings["autoscaling_config"] = autoscaling
    deployment = serve.deployment(**settings)(serve.ingress(app_from_env)(InferenceReplica))
    return deployment.bind()


class RayDeployment:
    """The inference app on a Ray cluster: `deploy` leaves it running and ready, or nothing at all."""

    def __init__(self, *, options: RayServeOptions, scaling: RayAutoscaling, env: dict[str, str]) -> None:
        self.options = options
        self.scaling = scaling
        self.env = env
        self._ray: Any = None
        self._serve: Any = None
        self._deployed = False

    @property
    def url(self) -> str:
        host = self.options.http_host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{self.options.http_port}"

    def connect(self) -> None:
        """Probe the head, then join the cluster as a driver; ClusterUnavailable when it does not answer."""
        probe(self.options.address, self.options.connect_timeout_s)
        ray, serve = import_ray()
        try:
            ray.init(
                address=self.options.address,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=True,
            )
        except Exception as exc:  # a version mismatch, a refused token: Ray says which
            raise ClusterUnavailable(
                f"could not join the Ray cluster at {self.options.address}: {exc}"
            ) from None
        self._ray, self._serve = ray, serve

    def deploy(self) -> str:
        """Start Serve's proxy if needed, deploy the app and wait until every replica is ready; on any
        failure (or Ctrl-C) delete what was deployed before raising. Returns the app's URL."""
        serve = self._serve
        try:
            serve.start(http_options={"host": self.options.http_host, "port": self.options.http_port})
            self._deployed = True
            target = application(serve, self.scaling, self.options, self.env)
            serve._run(target, _blocking=False, name=APP_NAME, route_prefix="/")
            self._wait_running()
        except BaseException as exc:
            self.undeploy()
            if isinstance(exc, ClusterUnavailable | KeyboardInterrupt):
                raise
            raise ClusterUnavailable(f"the Ray cluster did not take the deployment: {exc}") from None
        return self.url

    def _wait_running(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout_s
        while True:
            app = self._serve.status().applications.get(APP_NAME)
            state = str(getattr(app, "status", "")).rsplit(".", 1)[-1]
            if state == "RUNNING":
                return
            if state in ("DEPLOY_FAILED", "UNHEALTHY"):
                message = (getattr(app, "message", "") or "").strip().splitlines()
                raise ClusterUnavailable(
                    f"the replicas failed to start ({state}): {message[-1] if message else 'see the Ray logs'}"
                )
            if time.monotonic() > deadline:
                raise ClusterUnavailable(
                    f"the replicas were not ready after {self.options.ready_timeout_s:g} s (state {state or 'unknown'})"
                )
            time.sleep(_POLL_S)

    def undeploy(self) -> None:
        """Delete the app (its replicas flush their prediction logs as they stop) and leave the cluster."""
        if self._serve is not None and self._deployed:
            try:
                self._serve.delete(APP_NAME, _blocking=True)
            except Exception:  # the cluster went away: nothing of ours is left on it
                log.warning("could not delete the Serve application %r", APP_NAME, exc_info=True)
            self._deployed = False
        if self._ray is not None:
            self._ray.shutdown()
            self._ray = None
