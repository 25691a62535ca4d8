"""pytest (``--doctest-modules`` collects ``fxp/``): skip the torch modules when torch is absent."""

try:
    import torch  # noqa: F401
except ImportError:
    collect_ignore = ["fake_quant.py", "inq.py", "loop.py", "qat.py"]
