"""Make the fxp pytest plugin's fixtures available even where its entry point is not installed.

(With fxp installed, the ``pytest11`` entry point already provides them; these
imports then simply shadow the same fixtures for this directory.)
"""

from fxp.testing.plugin import c_compiler, fxp_compile_c, fxp_oracles, fxp_strategies  # noqa: F401
