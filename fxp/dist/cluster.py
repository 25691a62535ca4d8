"""Which Dask cluster a command runs on.

:func:`open_client` follows one rule, in this order:

1. ``scheduler="tcp://host:8786"`` (``--scheduler``): connect to that running
   cluster (started with ``dask scheduler`` / ``dask worker`` on any machines);
2. ``workers=N`` (``--workers``): start a :class:`distributed.LocalCluster`
   of ``N`` single-threaded worker processes on this machine;
3. the environment variable ``DASK_SCHEDULER_ADDRESS`` (Dask's own
   convention): connect to that cluster;
4. none of these: no client, the in-process path (nothing imports Dask).

``distributed`` is imported only in cases 1-3; without it a
:class:`~fxp.errors.MissingDependencyError` says what to install
(``pip install 'fxp[dist]'``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from fxp.errors import ClusterError, MissingDependencyError

__all__ = ["SCHEDULER_ENV", "cluster_address", "import_distributed", "open_client"]

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
"""Environment variable naming a running scheduler (Dask's convention)."""
CONNECT_TIMEOUT_S = 30
"""Seconds to wait for a scheduler before :class:`~fxp.errors.ClusterError`."""


def import_distributed():
    """The ``distributed`` module, or :class:`~fxp.errors.MissingDependencyError`."""
    try:
        import distributed
    except ImportError:
        raise MissingDependencyError("running on a Dask cluster needs the optional package "
                                     "'distributed': pip install 'fxp[dist]'") from None
    return distributed


def cluster_address(scheduler: str | None = None, workers: int | None = None) -> str | None:
    """The scheduler address to connect to (``None``: local cluster or in-process)."""
    if scheduler is not None:
        return scheduler
    if workers is not None:
        return None
    return os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def open_client(scheduler: str | None = None, workers: int | None = None) -> Iterator:
    """A :class:`distributed.Client` for the rule in the module docstring, or ``None``.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler; wins over ``workers``.
    workers : int, optional
        Worker processes of a local cluster (>= 1), one thread each.

    Raises
    ------
    ClusterError
        The scheduler cannot be reached, or the local cluster cannot start.
    MissingDependencyError
        A cluster was asked for and ``distributed`` is not installed.
    """
    if scheduler is not None and workers is not None:
        raise ClusterError(f"give --scheduler ({scheduler[:200]!r}) or --workers ({workers}), "
                           "not both")
    if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
        raise ClusterError(f"workers must be a positive integer, got {workers!r}")
    address = cluster_address(scheduler, workers)
    if address is None and workers is None:
        yield None
        return
    distributed = import_distributed()
    cluster = None
    try:
        if address is not None:
            client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S)
        else:
            cluster = distributed.LocalCluster(n_workers=int(workers), threads_per_worker=1,
                                               processes=True, dashboard_address=":0")
            client = distributed.Client(cluster)
    except (OSError, TimeoutError) as exc:
        where = f"scheduler {address[:200]!r}" if address else f"a local cluster of {workers}"
        raise ClusterError(f"cannot reach {where}: {str(exc)[:200]}") from None
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
