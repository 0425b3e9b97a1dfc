"""Where a sweep runs: joining a Ray cluster by address, or starting Ray on this machine.

Address precedence: the ``address`` argument (``--address``) > ``params["sweep"]["address"]`` >
the ``RAY_ADDRESS`` environment variable > a new local Ray with ``sweep.num_cpus`` CPUs.

The dermclean package reaches the workers through Ray's ``runtime_env``: ``py_modules`` uploads the
``src/dermclean`` folder the driver imports (Ray zips it into the cluster's object store), so a
remote cluster runs exactly the driver's code without installing it; the workers' Python must
still hold the dependencies (torch, diffusers, ...: the same image or ``pip install dermclean``).
``py_modules`` rather than ``working_dir`` because it ships only the package, not the repository's
data and models, and works the same on a local head. Data paths (manifest, detector) must be
readable by the workers: on a multi-node cluster, a shared filesystem.

A cluster started with token authentication (Ray's default for ``ray start``) expects the
client to set ``RAY_AUTH_MODE=token`` and provide the token (``~/.ray/auth_token`` or
``RAY_AUTH_TOKEN``) when joining by explicit address; see Ray's token-auth docs.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from dermclean.distributed import package_runtime_env


@dataclass(kw_only=True)
class RaySession:
    """The Ray the sweep runs on: ``address`` (``None`` = started locally) and its total resources."""

    address: str | None
    started_here: bool
    resources: dict[str, float] = field(default_factory=dict)

    def slots(self, per_trial: dict[str, float]) -> int:
        """How many trials of ``per_trial`` resources fit at once (at least 1)."""
        fits = [math.floor(self.resources.get(_ray_name(k), 0.0) / v + 1e-9) for k, v in per_trial.items() if v > 0]
        return max(1, min(fits)) if fits else 1


def resolve_address(explicit: str | None, configured: str | None) -> str | None:
    """``explicit`` > ``configured`` (params) > ``RAY_ADDRESS`` > ``None`` (start Ray locally)."""
    for candidate in (explicit, configured, os.environ.get("RAY_ADDRESS")):
        if candidate:
            return str(candidate)
    return None


@contextlib.contextmanager
def ray_session(address: str | None, *, num_cpus: int | None = None, ship_package: bool = True
                ) -> Iterator[RaySession]:
    """Join ``address`` or start a local Ray; shut it down on exit only if this call started it.

    When Ray is already initialised in this process (a caller set it up), it is used as is.
    """
    import ray

    if ray.is_initialized():
        yield RaySession(address=address, started_here=False, resources=dict(ray.cluster_resources()))
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": True,
                    "logging_level": "WARNING"}
    if ship_package:
        kwargs["runtime_env"] = package_runtime_env()
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    try:
        yield RaySession(address=address, started_here=True, resources=dict(ray.cluster_resources()))
    finally:
        ray.shutdown()


def _ray_name(resource: str) -> str:
    return {"cpu": "CPU", "gpu": "GPU"}.get(resource.lower(), resource)
