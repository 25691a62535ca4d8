"""Names from untrusted model and plan files cannot inject code or escape the output folder.

Issue 24 (part A) reproducers: a plan named ``x */ int injected = 1; /*`` made
``fxp export c`` write a header that compiled with the injected declaration;
node names could inject preprocessor lines, tensor names could pick golden file
names outside the folder, and names could inject Markdown into reports.  Each
test builds a model whose every name is hostile and checks the written files
with an independent reader: the C compiler, ``nm``, the file system, a strict
Markdown table parser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess

import numpy as np
import pytest

from fxp.cli import main
from fxp.errors import FormatError, OutputError, PlanError
from fxp.export.c_header import c_header, write_c_header
from fxp.export.golden import export_golden, read_hex
from fxp.export.hls4ml import hls4ml_config, write_hls4ml_config
from fxp.export.names import c_comment, c_identifiers, file_stems, is_c_identifier, md_cell
from fxp.ir.graph import Graph
from fxp.ir.nodes import Conv2D, Dense, Flatten, MaxPool2D
from fxp.plan.ptq import ptq_pow2
from fxp.sim.compile import compile_plan
from fxp.sim.integer import run_integer
from fxp.testing.cc import find_c_compiler

INJECT = "x */ int injected = 1; /*"
LAYERS = [INJECT,
          "a\n#error boom",                       # the brief's spelling
          "a */\n#error boom\n/*",                # the same, able to leave the comment
          '*/ #include "/etc/passwd" /*',
          '*/\n#include "/etc/passwd"\n/*',
          "t??/\n#error trigraph",                # ??/ is a backslash under -trigraphs
          "\u00e9\u5c64 $\\frac{$",               # unicode; bad mathtext in plots
          "9lives",                               # leading digit
          "conv.1", "conv-1"]                     # the same identifier once sanitized
TENSORS = ["../in", "../../evil", "a/b", "NUL", "..", ".hidden", "file", "allow_pickle",
           "Out", "out", "x" * 300, "t\x00z", "y|<script>alert(1)</script>"]
PLAN_NAME = INJECT + "\n#error plan ??/"


def hostile_graph(seed: int = 0) -> Graph:
    """10 weighted layers and a pool/flatten, every layer and tensor name hostile."""
    rng = np.random.default_rng(seed)
    f = np.float32
    t = iter(TENSORS)
    cur = next(t)

    def edge():
        nonlocal cur
        src, cur = cur, next(t)
        return (src,), (cur,)

    def conv(name, ci, co, k, **kw):
        i, o = edge()
        return Conv2D(name=name, inputs=i, outputs=o, bias=rng.normal(0, .1, co).astype(f),
                      weight=rng.normal(0, .5, (co, ci, k, k)).astype(f), **kw)

    def dense(name, fi, fo):
        i, o = edge()
        return Dense(name=name, inputs=i, outputs=o, weight=rng.normal(0, .4, (fo, fi)).astype(f),
                     bias=rng.normal(0, .1, fo).astype(f))

    nodes = [conv(LAYERS[0], 2, 3, 3, pads=(1, 1, 1, 1), fused_activation="relu")]
    i, o = edge()
    nodes.append(MaxPool2D(name="p\r\n#error pool", inputs=i, outputs=o, kernel=(2, 2),
                           strides=(2, 2)))
    nodes += [conv(LAYERS[1], 3, 3, 1), conv(LAYERS[2], 3, 3, 1), conv(LAYERS[3], 3, 3, 1),
              conv(LAYERS[4], 3, 4, 2)]
    i, o = edge()
    nodes.append(Flatten(name="[fl](http://evil.example)", inputs=i, outputs=o))
    nodes += [dense(LAYERS[5], 16, 8), dense(LAYERS[6], 8, 8), dense(LAYERS[7], 8, 7),
              dense(LAYERS[8], 7, 6), dense(LAYERS[9], 6, 5)]
    return Graph(nodes=tuple(nodes), inputs=(TENSORS[0],), outputs=(cur,),
                 input_shapes={TENSORS[0]: (None, 2, 6, 6)}, name="m */ #error x\n<b>|")


@pytest.fixture(scope="module")
def hostile():
    g = hostile_graph()
    x = np.random.default_rng(1).normal(size=(16, 2, 6, 6)).astype(np.float32)
    return g, ptq_pow2(g, x, weight_bits=6, name=PLAN_NAME), x


# -- the escaping rules themselves ---------------------------------------------------------

@pytest.mark.parametrize("text", [*LAYERS, PLAN_NAME, "\\\n", "?" * 7 + "/", "*" * 5 + "/",
                                  "/" + "*" * 3, "\x00\x1b[31m\u202e", "a" * 1000])
def test_c_comment_cannot_leave_the_comment(text):
    s = c_comment(text)
    assert "*/" not in s and "/*" not in s and "??" not in s
    assert all(0x20 <= ord(c) < 0x7F for c in s)  # printable ASCII: no newline, no NUL
    assert len(s) < 1000


def test_identifiers_are_valid_unique_and_stable():
    names = [*LAYERS, *TENSORS, "CONV_1", "int", "_Bool", "__x", "conv_1_2", "", "a" * 200]
    ids = c_identifiers(names)
    assert list(ids) == list(dict.fromkeys(names))
    assert all(is_c_identifier(v) and "__" not in v and len(v) <= 64 for v in ids.values())
    assert len({v.upper() for v in ids.values()}) == len(ids)  # the #define names too
    assert ids["conv_1_2"] == "conv_1_2" and ids["9lives"] == "l_9lives"
    assert ids["CONV_1"] == "CONV_1"  # a name that is its own identifier keeps it
    assert ids["conv.1"].startswith("conv_1_") and ids["conv-1"].startswith("conv_1_")
    assert c_identifiers(["conv.1", "conv-1"]) == {"conv.1": "conv_1", "conv-1": "conv_1_2"}
    assert c_identifiers(list(reversed(names)))["conv_1_2"] == "conv_1_2"
    assert ids == c_identifiers(names)  # deterministic


def test_file_stems_stay_in_the_folder():
    stems = file_stems(TENSORS)
    for name, s in stems.items():
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}", s), (name, s)
        assert ".." not in s and s.split(".")[0].upper() not in ("NUL", "CON")
    assert len({s.lower() for s in stems.values()}) == len(stems)


# -- C header: compile it, list its symbols, check its values -----------------------------

def _cc_or_skip():
    cc = find_c_compiler()
    if cc is None or shutil.which("nm") is None:
        pytest.skip("needs a C compiler and nm")
    return cc


CFLAGS = ["-std=c99", "-trigraphs", "-O0", "-Wall", "-Wextra", "-Wcomment", "-Werror",
          "-pedantic"]


def _compile(cc, src, out):
    res = subprocess.run([cc, *CFLAGS, "-c", "-o", str(out), str(src)], capture_output=True,
                         text=True, check=False)
    return res.returncode, res.stderr


def _program(header, arrays) -> str:
    """A C file that conflicts with any injected ``int injected`` and uses every array."""
    uses = "\n".join(f"  for (i = 0; i < sizeof {a} / sizeof {a}[0]; ++i) "
                     f"printf(\"{a} %lld\\n\", (long long){a}[i]);" for a, _ in arrays)
    return (f'#include "{header}"\n#include <stdio.h>\n'
            "double injected = 0.5;  /* an injected 'int injected' would conflict */\n"
            f"int main(void) {{\n  size_t i;\n{uses}\n  return 0;\n}}\n")


def _declared(text):
    """``[(name, ctype)]`` of the static arrays a header declares, in order."""
    return [(m[1], m[0]) for m in
            re.findall(r"static const (\w+) (\w+)\[\d+\] = \{", text)]


def test_c_header_declares_exactly_the_intended_symbols(hostile, tmp_path):
    cc = _cc_or_skip()
    g, plan, _ = hostile
    header = write_c_header(g, plan, tmp_path / "9 model-fxp.h")
    text = header.read_text()
    assert text.isascii() and "??" not in text
    assert re.search(r"^#ifndef ([A-Za-z_]\w*)\n#define \1$", text, re.M)
    arrays = _declared(text)
    src = tmp_path / "use.c"
    src.write_text(_program(header.name, arrays))
    rc, err = _compile(cc, src, tmp_path / "use.o")
    assert rc == 0, err  # no #error fired, no #include of /etc/passwd, no conflicting injected
    nm = subprocess.run(["nm", "--defined-only", str(tmp_path / "use.o")], capture_output=True,
                        text=True, check=True).stdout.split()
    symbols = {s for s in nm if re.fullmatch(r"[A-Za-z_]\w*", s) and len(s) > 1}
    assert symbols == {a for a, _ in arrays} | {"main", "injected"}
    steps = [s for s in compile_plan(g, plan).steps if s.w_codes is not None]
    assert sum(a.endswith("_w") for a, _ in arrays) == len(steps) == len(LAYERS)
    # every layer's name shows up, escaped, in its own comment line
    for name in LAYERS:
        assert f"/* layer {c_comment(name)}: weight" in text
    # outside comments: only the guard, <stdint.h>, unique #defines and the arrays
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    directives = re.findall(r"^\s*#\s*(\w+)", code, re.M)
    assert set(directives) == {"ifndef", "define", "include", "endif"}
    assert re.findall(r"^#include (.*)$", code, re.M) == ["<stdint.h>"]
    defined = re.findall(r"^#define (\w+)", code, re.M)
    assert len(defined) == len(set(defined))
    assert re.search(r"\b(injected|error|passwd)\b", code) is None


def test_a_raw_name_in_a_comment_would_be_caught(tmp_path):
    """Negative control: the pre-fix header line with the raw name fails this check."""
    cc = _cc_or_skip()
    (tmp_path / "bad.h").write_text(f"/* Generated by fxp from plan {INJECT} */\n")
    src = tmp_path / "use.c"
    src.write_text(_program("bad.h", []))
    rc, err = _compile(cc, src, tmp_path / "use.o")
    assert rc != 0 and "injected" in err


def test_c_header_values_survive_the_escaping(hostile, tmp_path):
    cc = _cc_or_skip()
    g, plan, _ = hostile
    text = c_header(g, plan, "HOSTILE_H")
    (tmp_path / "h.h").write_text(text)
    arrays = _declared(text)
    src = tmp_path / "main.c"
    src.write_text(_program("h.h", arrays))
    exe = tmp_path / "main"
    subprocess.run([cc, *CFLAGS, "-o", str(exe), str(src)], check=True, capture_output=True)
    got: dict[str, list[int]] = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True,
                               check=True).stdout.splitlines():
        name, v = line.split()
        got.setdefault(name, []).append(int(v))
    by_layer = iter(a for a, _ in arrays)
    for step in (s for s in compile_plan(g, plan).steps if s.w_codes is not None):
        w, b = next(by_layer), next(by_layer)  # declaration order: w then b per layer
        assert w.endswith("_w") and b.endswith("_b") and w[:-2] == b[:-2]
        assert got[w] == step.w_codes.ravel().tolist(), step.name
        assert got[b] == step.b_codes.ravel().tolist(), step.name
    assert next(by_layer, None) is None


def test_c_header_refuses_a_bad_guard(hostile):
    g, plan, _ = hostile
    with pytest.raises(FormatError, match="include guard 'X\\\\n#error' is not a C identifier"):
        c_header(g, plan, "X\n#error")


# -- hls4ml, golden vectors, reports --------------------------------------------------------

def test_hls4ml_refuses_names_that_are_not_identifiers(hostile):
    g, plan, _ = hostile
    with pytest.raises(PlanError, match=r"input '\.\./in' is not a C\+\+ identifier"):
        hls4ml_config(g, plan)
    with pytest.raises(PlanError, match=re.escape(f"layer {INJECT!r} is not a C++ identifier")):
        hls4ml_config(_rename_input(g), plan)


def _rename_input(g: Graph) -> Graph:
    from dataclasses import replace

    first = replace(g.nodes[0], inputs=("x_in",))
    return Graph(nodes=(first, *g.nodes[1:]), inputs=("x_in",), outputs=g.outputs,
                 input_shapes={"x_in": (None, 2, 6, 6)})


def test_golden_files_stay_in_the_folder_and_match_the_engine(hostile, tmp_path):
    g, plan, x = hostile
    root = tmp_path / "root"
    out = export_golden(g, plan, x[:3], root / "gold")
    files = [p for p in root.rglob("*") if p.is_file()]
    assert all(p.parent == out for p in files)  # nothing written outside gold/
    assert not any(p.name.startswith(".") for p in files)
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,79}\.hex|golden\.npz|manifest\.json",
                            p.name) for p in files), [p.name for p in files]
    manifest = json.loads((out / "manifest.json").read_text())
    run = run_integer(compile_plan(g, plan), x[:3], keep=True)
    npz = np.load(out / "golden.npz", allow_pickle=False)
    tensors = {t["tensor"]: t for t in manifest["tensors"]}
    assert set(tensors) == set(TENSORS)
    assert len({t["hex"].lower() for t in tensors.values()}) == len(tensors)
    for name, t in tensors.items():
        codes = read_hex(out / t["hex"], t["bits"], t["signed"], t["shape"])
        assert np.array_equal(codes, run.values[name].codes), name
        assert np.array_equal(npz[t["npz"]], codes), name
    assert manifest["plan"]["name"] == PLAN_NAME


def _md_cells(line: str) -> list[str]:
    """Split a Markdown table row on unescaped ``|`` (a backslash escapes the next char)."""
    cells, cur, i = [], "", 0
    while i < len(line):
        if line[i] == "\\":
            cur += line[i:i + 2]
            i += 2
            continue
        if line[i] == "|":
            cells.append(cur)
            cur = ""
        else:
            cur += line[i]
        i += 1
    return [*cells, cur][1:-1]


def _unescaped(text: str, ch: str) -> bool:
    return re.search(r"(?<!\\)(?:\\\\)*" + re.escape(ch), text) is not None


def test_report_markdown_cannot_be_injected(hostile, tmp_path):
    pytest.importorskip("matplotlib")
    from fxp import workflow as fw
    from fxp.report.render import write_report

    g, plan, x = hostile
    y = np.arange(len(x)) % 5
    data = fw.Data(x, y, "<script>alert(1)</script>\n# injected [a](http://evil.example)")
    rep = fw.run_simulation(g, plan, data, keep_predictions=True, per_channel=True)
    out = write_report(g, plan, rep, y, tmp_path / "rep",
                       command="fxp report m\n```\n<script>x</script>")
    md = (out / "report.md").read_text()
    lines = md.splitlines()
    body = re.sub(r"^(`{3,})\n.*?\n\1$", "", md, flags=re.S | re.M)  # code blocks are literal
    assert [ln for ln in lines if ln.startswith("#")] == [lines[0], "## Per layer"]
    assert not _unescaped(body, "<script") and not _unescaped(body, "](http")
    assert not _unescaped(body, "<b>") and "<script>x</script>" in md
    fences = [ln for ln in lines if ln.startswith("```")]
    outer = fences[0]  # a fence closes only with one at least as long (CommonMark)
    assert [f for f in fences if len(f) >= len(outer)] == [outer, outer] and len(fences) == 3
    tables = [ln for ln in lines if ln.startswith("|") and not ln.startswith("|-")]
    widths = {len(_md_cells(ln)) for ln in tables}
    assert widths == {2, 9}, widths  # summary table and the per-layer table, never split
    layer_rows = [ln for ln in tables if len(_md_cells(ln)) == 9][1:]
    assert [_md_cells(r)[0].strip() for r in layer_rows] == [md_cell(r.name) for r in rep.layers]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["bits.png", "sqnr.png", "overflow.png", "confusion.png", "weights.png", "report.md",
         "report.json"])


def test_md_cell_escapes():
    assert _md_cells("| " + md_cell("a|b\\|c") + " |") == [" " + md_cell("a|b\\|c") + " "]
    assert md_cell("fixed<8,3>") == "fixed<8,3>"  # formats stay readable
    assert "\n" not in md_cell("a\nb\u2028c")


# -- unwritable outputs: one OutputError, exit code 2 ---------------------------------------

@pytest.fixture(scope="module")
def tiny():
    from tests.sim.test_integer_engine import tiny_graph

    g = tiny_graph(3)
    x = np.random.default_rng(3).normal(size=(8, 2, 6, 6)).astype(np.float32)
    return g, ptq_pow2(g, x), x


def _bad_paths(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    paths = [blocker / "sub"]
    if os.geteuid() != 0:  # root ignores folder permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
        paths.append(ro / "sub")
    return paths


@pytest.mark.parametrize("writer", ["c", "hls4ml", "golden", "report", "train_json"])
def test_unwritable_output_is_one_output_error(tiny, tmp_path, writer):
    g, plan, x = tiny
    for bad in _bad_paths(tmp_path):
        with pytest.raises(OutputError) as info:
            if writer == "c":
                write_c_header(g, plan, bad / "m.h")
            elif writer == "hls4ml":
                write_hls4ml_config(g, plan, bad / "h.json")
            elif writer == "golden":
                export_golden(g, plan, x[:2], bad)
            elif writer == "report":
                pytest.importorskip("matplotlib")
                from fxp import workflow as fw
                from fxp.report.render import write_report

                rep = fw.run_simulation(g, plan, fw.Data(x, np.zeros(len(x), int), "d"),
                                        keep_predictions=True)
                write_report(g, plan, rep, np.zeros(len(x), int), bad)
            else:
                from fxp.train.export import write_json

                write_json(bad / "r.json", {"a": 1})
        msg = str(info.value)
        assert "\n" not in msg and str(bad)[:40] in msg


def test_cli_export_to_an_unwritable_path_exits_2(tmp_path, capsys):
    from fxp import workflow as fw
    from fxp.plan.io import save_plan

    g = fw.load_model("mnist_cnn")
    x = np.random.default_rng(0).uniform(0, 1, (8, 1, 28, 28)).astype(np.float32)
    plan = save_plan(ptq_pow2(g, x), tmp_path / "p.json")
    for bad in _bad_paths(tmp_path):
        for what in ("c", "hls4ml"):
            capsys.readouterr()
            rc = main(["export", what, "mnist_cnn", "--plan", str(plan), "--out",
                       str(bad / "out.h")])
            err = capsys.readouterr().err
            assert rc == 2, err
            assert len(err.strip().splitlines()) == 1 and "cannot" in err, err
