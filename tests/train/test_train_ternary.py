"""Ternary / binary training and clustered fine-tuning (fxp.train.ternary, fxp.train.cluster).

Every retrained model, exported as ONNX + plan, simulates to the torch fake-quantized
predictions and integer logits on every image; the exported weight codes have the
method's structure ({-k, 0, k}, {-k, k}, <= 2**b values).  Small: the tiny CNN on sklearn
``digits``, a few hundred steps in all.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from fxp import workflow as fw  # noqa: E402
from fxp.core.format import QFormat  # noqa: E402
from fxp.plan.io import load_plan  # noqa: E402
from fxp.quant.binary import binarize  # noqa: E402
from fxp.quant.ternary import HwangSung, twn  # noqa: E402
from fxp.sim.compile import compile_plan  # noqa: E402
from fxp.sim.integer import run_integer  # noqa: E402
from fxp.sim.values import quantize_spec  # noqa: E402
from fxp.train.cluster import ClusterProjection, train_cluster  # noqa: E402
from fxp.train.export import export_trained, graph_to_onnx  # noqa: E402
from fxp.train.fake_quant import FxpNet  # noqa: E402
from fxp.train.loop import TrainConfig  # noqa: E402
from fxp.train.project import projected_plan, scale_format  # noqa: E402
from fxp.train.ternary import (  # noqa: E402
    BinaryConnectProjection, HwangSungProjection, TWNProjection, train_binaryconnect,
    train_hwang_sung, train_twn,
)

from tests.train.conftest import N_TRAIN  # noqa: E402
CFG = TrainConfig(epochs=2, lr=1e-3, batch_size=32, steps_per_epoch=25)


def _check_export(res, tmp_path, name, d):
    """Export, re-import with fxp, simulate: same predictions and same integer logits."""
    exp = export_trained(res.net, tmp_path, name)
    graph = fw.load_model(exp.onnx_path)
    plan = load_plan(exp.plan_path)
    ev = fw.Data(d.x[N_TRAIN:], d.y[N_TRAIN:], "digits[1400:]")
    rep = fw.run_simulation(graph, plan, ev, keep_predictions=True)
    assert np.array_equal(rep.fixed_predictions, res.eval_predictions)  # 100% agreement
    assert rep.fixed_top1 == pytest.approx(res.eval_top1)
    run = run_integer(compile_plan(graph, plan), ev.x, keep=True)
    np.testing.assert_array_equal(run.values[res.net.logits_tensor].codes,
                                  res.net.logit_codes(res.eval_logits))
    return graph, plan


def _codes(graph, plan):
    """Exported weight codes per layer, as fxp quantizes them."""
    return {n.name: quantize_spec(n.weight.astype(np.float64), plan.layer(n.name).weight)[0]
            for n in graph.nodes if getattr(n, "weight", None) is not None}


TRAINERS = {
    "twn": lambda g, x, y, **kw: train_twn(g, x, y, **kw),
    "hs2": lambda g, x, y, **kw: train_hwang_sung(g, x, y, bits=2, **kw),
    "hs3": lambda g, x, y, **kw: train_hwang_sung(g, x, y, bits=3, step_search=None, **kw),
    "bc": lambda g, x, y, **kw: train_binaryconnect(g, x, y, **kw),
    "km3": lambda g, x, y, **kw: train_cluster(g, x, y, bits=3, **kw),
    "hcward2": lambda g, x, y, **kw: train_cluster(g, x, y, bits=2, algorithm="hc:ward", **kw),
}


@pytest.mark.parametrize("method", list(TRAINERS))
def test_export_is_exact_and_codes_have_the_structure(digits, float_graph, tmp_path, method):
    _, d = digits
    res = TRAINERS[method](float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], config=CFG,
                           eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    assert res.eval_top1 > 0.6, res.history
    graph, plan = _check_export(res, tmp_path, method, d)
    for name, c in _codes(graph, plan).items():
        u = np.unique(c)
        info = res.extra["layers"][name]
        assert info["distinct_codes"] == u.size
        fmt = plan.layer(name).weight.fmt
        if method in ("twn", "hs2"):  # ternary {-k, 0, k}
            k = u.max()
            assert set(u.tolist()) <= {-k, 0, k} and k > 0 and fmt.bits == 8
            if method == "twn":  # k = round(alpha * 2**F) of the final shadow weights
                assert k == min(round(info["alpha"] * 2.0 ** fmt.frac_bits), fmt.max_code)
            else:
                assert k == info["step_code"]
        elif method == "hs3":  # q * d, |q| <= 3, exact
            assert np.all(c % info["step_code"] == 0)
            assert np.abs(c).max() <= 3 * info["step_code"] and u.size <= 7
        elif method == "bc":  # binary {-k, k}
            assert u.size == 2 and u[0] == -u[1] and fmt.bits == 8
        else:
            assert u.size <= 2 ** (3 if method == "km3" else 2)
            assert fmt.bits == 8


@pytest.mark.parametrize("linkage", ["complete", "average", "single"])
def test_cluster_other_linkages_export_exactly(digits, float_graph, tmp_path, linkage):
    _, d = digits
    res = train_cluster(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=2,
                        algorithm=f"hc:{linkage}",
                        config=TrainConfig(epochs=1, lr=1e-3, batch_size=32, steps_per_epoch=8),
                        eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    graph, plan = _check_export(res, tmp_path, linkage, d)
    assert all(np.unique(c).size <= 4 for c in _codes(graph, plan).values())


# -- the projections against independent numpy references ----------------------------

@pytest.mark.parametrize("shape", [(7,), (16, 3, 3, 3), (10, 64), (1, 1, 1, 1)])
def test_twn_projection_equals_numpy_twn(shape):
    rng = np.random.default_rng(sum(shape))
    for scale in (1.0, 0.01):
        w = (rng.standard_normal(shape) * scale).astype(np.float32)
        wt = torch.from_numpy(w).requires_grad_(True)
        got = TWNProjection()(wt)
        np.testing.assert_array_equal(got.detach().numpy(), twn(w).values)
        # the formulas, independently: Delta = 0.7 mean|W|, alpha = mean of the kept |w|
        a = np.abs(w.astype(np.float64))
        keep = a > 0.7 * a.mean()
        ref = np.where(keep, np.sign(w) * a[keep].mean(), 0.0)
        np.testing.assert_allclose(got.detach().numpy(), ref, rtol=1e-12, atol=0)
        g = torch.from_numpy(rng.standard_normal(shape))
        (got * g).sum().backward()
        np.testing.assert_array_equal(wt.grad.numpy(), g.numpy().astype(np.float32))  # STE


def test_twn_ties_at_the_threshold_go_to_zero():
    w = np.array([3.0, -3.0, 1.0, -1.0], np.float32)  # factor 0.5: Delta = 0.5 * 2 = 1 exactly
    got = TWNProjection(0.5)(torch.from_numpy(w)).detach().numpy()
    np.testing.assert_array_equal(got, [3.0, -3.0, 0.0, 0.0])
    np.testing.assert_array_equal(got, twn(w, factor=0.5).values)


def test_binaryconnect_projection_sign_alpha_gradient_and_clip():
    w = np.array([[0.5, 0.0, -1.5, 2.0, -0.25]], np.float32)
    wt = torch.from_numpy(w.copy()).requires_grad_(True)
    proj = BinaryConnectProjection()
    v = proj(wt)
    alpha = np.abs(w.astype(np.float64)).mean()
    np.testing.assert_array_equal(v.detach().numpy(), alpha * binarize(w))  # sign(0) = +1
    v.sum().backward()
    np.testing.assert_array_equal(wt.grad.numpy(), [[1, 1, 0, 0, 1]])  # cancelled where |w|>1
    with torch.no_grad():
        proj.after_step(wt)
    np.testing.assert_array_equal(wt.detach().numpy(), [[0.5, 0.0, -1.0, 1.0, -0.25]])


@pytest.mark.parametrize("bits", [2, 3, 5])
def test_hwang_sung_projection_fixed_step_and_exact_format(bits):
    rng = np.random.default_rng(bits)
    w0 = rng.standard_normal((8, 20)) * 0.1
    proj = HwangSungProjection(w0, bits)
    p = HwangSung().fit(w0, bits)
    fmt = proj.weight_format(None, 8)
    assert proj.qmax == p["qmax"] == 2 ** (bits - 1) - 1
    assert abs(proj.step - p["step"]) <= 2.0 ** -fmt.frac_bits / 2  # d * 2**-F, rounded
    assert 64 <= int(proj.step_code) <= 127
    w = torch.from_numpy(w0 + rng.standard_normal(w0.shape) * 0.02)  # retrained weights
    v = proj(w).detach().numpy()
    q = HwangSung().encode(w.numpy(), {"step": proj.step, "qmax": proj.qmax})
    np.testing.assert_array_equal(v, proj.step * q)
    codes, sat = quantize_spec(v, fxp_spec(fmt))
    assert sat == 0 and np.array_equal(codes, q * int(proj.step_code))  # exact, no rounding
    assert fmt.bits == (proj.qmax * int(proj.step_code)).bit_length() + 1


@pytest.mark.parametrize("mode", ["network", None])
def test_hwang_sung_trains_from_the_searched_steps(digits, float_graph, tmp_path, mode):
    """The projections start from the output-error search's steps (as stored), or the L2 ones."""
    from fxp.quant.step_search import search_steps
    from fxp.train.ternary import stored_step

    _, d = digits
    x = d.x[:N_TRAIN]
    res = train_hwang_sung(float_graph, x, d.y[:N_TRAIN], step_search=mode, calib=200,
                           config=TrainConfig(epochs=0), eval_x=d.x[N_TRAIN:],
                           eval_y=d.y[N_TRAIN:])
    info = res.extra["layers"]
    assert res.extra["step_search"]["mode"] == mode
    if mode is None:
        for name, row in info.items():
            assert row["step"] == stored_step(row["l2_step"]) and "steps" not in \
                res.extra["step_search"]
        return
    ref = search_steps(float_graph, x[:200], init=mode, snap=stored_step)
    assert res.extra["step_search"]["steps"] == ref.steps
    assert res.extra["step_search"]["error"] == ref.error <= ref.initial_error
    for name, row in info.items():
        assert row["step"] == row["fitted_step"] == ref.steps[name]  # stored exactly
        assert row["step_code"] * 2.0 ** -res.plan.layer(name).weight.fmt.frac_bits \
            == ref.steps[name]


def fxp_spec(fmt):
    from fxp.plan.plan import TensorSpec

    return TensorSpec(fmt)


def test_scale_format_is_the_tightest():
    for m in (0.3, 1.0, 127.0, 1e-3, 5.5):
        fmt = scale_format(m, 8)
        assert m * 2.0 ** fmt.frac_bits <= 127 < m * 2.0 ** (fmt.frac_bits + 1)
        assert fmt == QFormat.from_frac(8, fmt.frac_bits)


# -- clustering: shared gradients, fixed index map ------------------------------------------

def test_cluster_centroid_gradient_is_the_sum_of_member_gradients(digits, float_graph):
    _, d = digits
    net = FxpNet(float_graph)
    for n in net.weighted_layers:
        net.set_projection(n, ClusterProjection(net.weight(n).detach().numpy(), 3))
        net.weight(n).requires_grad_(False)
    net.set_plan(projected_plan(net, d.x[:256]))
    seen = {}

    def grab(name):
        def hook(module, inputs, out):  # dL/dW_q, the gradient at the projection's output
            out.register_hook(lambda g: seen.__setitem__(name, g.clone()))
        return hook

    hooks = [net.projection(n).register_forward_hook(grab(n)) for n in net.weighted_layers]
    logits = net(d.x[:64])
    labels = torch.from_numpy(d.y[:64].astype(np.int64))
    torch.nn.functional.cross_entropy(logits, labels).backward()
    for h in hooks:
        h.remove()
    for n in net.weighted_layers:
        proj = net.projection(n)
        g = seen[n].numpy()  # dL/dW_q of every weight
        idx = proj.index.numpy()
        want = np.bincount(idx.ravel(), weights=g.ravel(), minlength=proj.centroids.numel())
        assert np.any(want != 0)
        np.testing.assert_allclose(proj.centroids.grad.numpy(), want, rtol=1e-10, atol=1e-300)
        assert net.weight(n).grad is None  # the float weights are frozen


def test_cluster_index_map_is_fixed_and_centroids_move(digits, float_graph):
    _, d = digits
    res = train_cluster(float_graph, d.x[:N_TRAIN], d.y[:N_TRAIN], bits=2, config=CFG,
                        eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    net0 = FxpNet(float_graph)
    for n in res.net.weighted_layers:
        fresh = ClusterProjection(net0.weight(n).detach().numpy(), 2)
        trained = res.net.projection(n)
        assert torch.equal(trained.index, fresh.index)
        assert not torch.equal(trained.centroids, fresh.centroids)
        assert torch.equal(res.net.weight(n), net0.weight(n))  # raw weights untouched


# -- the FxpNet projection mechanism -------------------------------------------------------

def test_projected_levels_saturate_symmetrically(digits, float_graph, tmp_path):
    """A scale that outgrows the weight format gives codes {-max, 0, max}, not {min, 0, max}."""
    _, d = digits
    net = FxpNet(float_graph)
    for n in net.weighted_layers:
        net.set_projection(n, TWNProjection())
    plan = projected_plan(net, d.x[:256])
    for n in net.weighted_layers:  # formats 4x too small for alpha
        f = plan.layer(n).weight.fmt
        plan = plan.replace_layer(n, weight=fxp_spec(QFormat.from_frac(8, f.frac_bits + 2)))
    net.set_plan(plan)
    for n in net.weighted_layers:
        assert set(np.unique(net._codes_np(n)[0]).tolist()) == {-127, 0, 127}
    exp = export_trained(net, tmp_path, "sat")
    g2, p2 = fw.load_model(exp.onnx_path), load_plan(exp.plan_path)
    _, logits = net.predict(d.x[:300])
    run = run_integer(compile_plan(g2, p2), d.x[:300], keep=True)
    np.testing.assert_array_equal(run.values[net.logits_tensor].codes, net.logit_codes(logits))


def test_projection_state_and_removal(float_graph):
    net = FxpNet(float_graph)
    keys0 = set(net.state_dict())
    net.set_projection("conv2", ClusterProjection(net.weight("conv2").detach().numpy(), 2))
    assert set(net.state_dict()) - keys0 == {"projections.l1_conv2.centroids",
                                             "projections.l1_conv2.index"}
    assert any(p is net.projection("conv2").centroids for p in net.parameters())
    w = net.to_graph().layer("conv2").weight
    assert np.unique(w).size <= 4
    net.set_projection("conv2", None)
    assert net.projection("conv2") is None and set(net.state_dict()) == keys0


# -- resume --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["twn", "bc", "km3"])
def test_resume_gives_the_same_weights(digits, float_graph, tmp_path, method):
    _, d = digits
    kw = dict(eval_x=d.x[N_TRAIN:], eval_y=d.y[N_TRAIN:])
    cfg = lambda e: TrainConfig(epochs=e, lr=1e-3, batch_size=32, steps_per_epoch=6,  # noqa: E731
                                seed=4)
    x, y = d.x[:N_TRAIN], d.y[:N_TRAIN]
    a = TRAINERS[method](float_graph, x, y, config=cfg(2), out_dir=tmp_path / "a", **kw)
    TRAINERS[method](float_graph, x, y, config=cfg(1), out_dir=tmp_path / "b", **kw)
    b = TRAINERS[method](float_graph, x, y, config=cfg(2), out_dir=tmp_path / "b", **kw)
    assert [h["epoch"] for h in b.history] == [1, 2]
    sa, sb = a.net.state_dict(), b.net.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert a.plan == b.plan
    np.testing.assert_array_equal(a.eval_logits, b.eval_logits)


# -- workflow / CLI ------------------------------------------------------------------------------

def _onnx(tmp_path, graph):
    import onnx

    p = tmp_path / "digits_cnn.onnx"
    onnx.save(graph_to_onnx(graph), str(p))
    return p


def test_cli_train_cluster_hc(digits, float_graph, tmp_path, capsys):
    from fxp.cli import main

    model = _onnx(tmp_path, float_graph)
    rc = main(["train", "cluster", str(model), "--data", "digits", "--bits", "2", "--cluster",
               "hc:ward", "--epochs", "1", "--limit", "300", "--out", str(tmp_path / "c")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "agreement with torch 1.0000" in out
    assert (tmp_path / "c" / "digits_cnn-cluster-hc-ward-w2.plan.json").exists()


@pytest.mark.parametrize("argv,msg", [
    (["twn", "--bits", "3"], "twn weights have 2 bits; got --bits 3"),
    (["binaryconnect", "--bits", "2"], "binaryconnect weights have 1 bit; got --bits 2"),
    (["hwang-sung", "--bits", "9"], "hwang-sung bits must be in 2..8"),
    (["twn", "--scratch"], "twn quantizes a pretrained model"),
])
def test_cli_train_bad_input_is_one_line(tmp_path, capsys, argv, msg):
    from fxp.cli import main

    rc = main(["train", argv[0], "mnist_cnn", "--data", "digits", "--out", str(tmp_path),
               *argv[1:]])
    err = capsys.readouterr().err
    assert rc == 2
    assert msg in err and len(err.strip().splitlines()) == 1, err


def test_train_model_refuses_an_unknown_step_search(tmp_path):
    from fxp.errors import PlanError
    from fxp.workflow_train import train_model

    with pytest.raises(PlanError, match="step_search must be"):
        train_model("hwang-sung", "mnist_cnn", "digits", out=tmp_path, step_search="bogus")


def test_cli_train_step_search_choices_are_checked(capsys):
    from fxp.cli import main

    with pytest.raises(SystemExit) as e:  # argparse: usage line + error, exit 2
        main(["train", "hwang-sung", "mnist_cnn", "--data", "digits", "--out", "/tmp/x",
              "--step-search", "bogus"])
    assert e.value.code == 2 and "--step-search" in capsys.readouterr().err
