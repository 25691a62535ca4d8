"""Fixtures shared by the training tests: sklearn ``digits`` and a tiny CNN trained in float.

Imports are inside the fixtures, so collection works without torch (the test modules skip).
"""

from __future__ import annotations

import pytest

N_TRAIN = 1400
"""The first N_TRAIN digits train; the rest evaluate."""


@pytest.fixture(scope="session")
def digits():
    from fxp import workflow as fw
    from fxp.train.arch import DIGITS_CNN, DIGITS_METADATA, sequential_graph

    g = sequential_graph(DIGITS_CNN, (1, 8, 8), name="digits_cnn", metadata=DIGITS_METADATA)
    return g, fw.load_data("digits", g)


@pytest.fixture(scope="session")
def float_graph(digits):
    """The tiny CNN trained in float (about 150 steps)."""
    from fxp.train.loop import TrainConfig
    from fxp.train.qat import train_float

    g, d = digits
    res = train_float(g, d.x[:N_TRAIN], d.y[:N_TRAIN],
                      config=TrainConfig(epochs=7, lr=3e-3, batch_size=64, seed=0),
                      eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert res.eval_top1 > 0.85, res.history
    return res.net.to_graph()
