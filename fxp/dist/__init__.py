"""Spreading fxp's map steps over a Dask cluster (optional extra ``fxp[dist]``).

* :mod:`fxp.dist.cluster`: which cluster (``--scheduler`` / ``--workers`` /
  ``DASK_SCHEDULER_ADDRESS`` / none) and the client for it;
* :mod:`fxp.dist.stream`: data sources read in chunks on the workers;
* :mod:`fxp.dist.simulate`: :func:`~fxp.sim.evaluate.simulate` over batches on
  the cluster, with a report identical to the in-process one.

Importing this package does not import Dask; only opening a client does.
"""
