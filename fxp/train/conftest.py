"""pytest (``--doctest-modules`` collects ``fxp/``): skip the torch modules when torch is absent."""

try:
    import torch  # noqa: F401
except ImportError:
    collect_ignore = ["cluster.py", "fake_quant.py", "inq.py", "loop.py", "project.py", "qat.py",
                      "ternary.py"]
