"""The model graph: nodes in topological order plus tensor shapes.

A :class:`Graph` is frozen.  Construction validates it and infers the shape
of every tensor; helpers such as :meth:`Graph.with_nodes` return new graphs.
Shapes keep the batch dimension as ``None`` (free): any ``N >= 1`` runs.

>>> import numpy as np
>>> from fxp.ir.nodes import Dense, ReLU
>>> g = Graph(nodes=(Dense(name="fc", inputs=("x",), outputs=("h",),
...                        weight=np.ones((3, 4), np.float32)),
...                  ReLU(name="act", inputs=("h",), outputs=("y",))),
...           inputs=("x",), input_shapes={"x": (None, 4)}, outputs=("y",))
>>> g.shapes["y"]
(None, 3)
>>> [n.name for n in g.consumers("h")]
['act']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from fxp.errors import GraphError
from fxp.ir.nodes import Node, Shape

__all__ = ["Graph"]


def _freeze(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, eq=False)
class Graph:
    """A validated, shape-annotated model graph.

    Parameters
    ----------
    nodes : sequence of Node
        In topological order (every input is a graph input or produced by an
        earlier node).
    inputs : tuple of str
        Graph input tensor names.
    input_shapes : mapping str -> shape
        Shape of each input; dim 0 (batch) is ``None`` or is replaced by ``None``.
    outputs : tuple of str
        Graph output tensor names.
    metadata : mapping str -> str
        Free-form strings, e.g. preprocessing (``fxp.preprocess.mean``) copied
        from ONNX ``metadata_props``.
    name : str
        Model name.

    Attributes
    ----------
    shapes : mapping str -> shape
        Inferred shape of every tensor (batch ``None``).

    Raises
    ------
    GraphError
        Duplicate node names, a tensor written twice, an input read before it
        is produced (cycle or wrong order), an output never produced, or a
        node rejecting its input shapes.
    """

    nodes: tuple[Node, ...]
    inputs: tuple[str, ...]
    input_shapes: Mapping[str, Shape]
    outputs: tuple[str, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)
    name: str = "graph"
    shapes: Mapping[str, Shape] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "nodes", tuple(self.nodes))
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        shapes = {}
        for t in self.inputs:
            if t not in self.input_shapes:
                raise GraphError(f"graph input {t!r} has no entry in input_shapes")
            s = tuple(self.input_shapes[t])
            shapes[t] = (None, *(int(d) for d in s[1:])) if s else s
        object.__setattr__(self, "input_shapes", _freeze({t: shapes[t] for t in self.inputs}))
        object.__setattr__(self, "metadata", _freeze(self.metadata))
        object.__setattr__(self, "shapes", _freeze(self._infer(shapes)))
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})
        object.__setattr__(self, "_producer", {n.output: n for n in self.nodes})
        users: dict[str, list[Node]] = {}
        for n in self.nodes:
            for t in dict.fromkeys(n.inputs):
                users.setdefault(t, []).append(n)
        object.__setattr__(self, "_consumers", {t: tuple(v) for t, v in users.items()})

    def _infer(self, shapes: dict[str, Shape]) -> dict[str, Shape]:
        if not self.inputs:
            raise GraphError("graph has no inputs")
        if not self.nodes:
            raise GraphError("graph has no nodes")
        if not self.outputs:
            raise GraphError("graph has no outputs")
        if len(set(self.inputs)) != len(self.inputs):
            raise GraphError(f"duplicate graph inputs {self.inputs}")
        for s in shapes.values():
            if any(d is not None and d < 1 for d in s[1:]) or len(s) < 2:
                raise GraphError(f"graph input shapes must have rank >= 2 and positive "
                                 f"dims, got {dict(shapes)}")
        names: set[str] = set()
        for node in self.nodes:
            if not isinstance(node, Node):
                raise GraphError(f"graph nodes must be fxp.ir.nodes.Node, got {type(node)}")
            if node.name in names:
                raise GraphError(f"duplicate node name {node.name!r}")
            names.add(node.name)
            for t in node.inputs:
                if t not in shapes:
                    raise GraphError(f"node {node.name!r} ({node.op_type}) reads tensor {t!r} "
                                     f"that is not a graph input nor produced by an earlier node")
            if node.output in shapes:
                raise GraphError(f"tensor {node.output!r} is written twice "
                                 f"(node {node.name!r})")
            shapes[node.output] = node.infer_shape(*(shapes[t] for t in node.inputs))
        for t in self.outputs:
            if t not in shapes:
                raise GraphError(f"graph output {t!r} is not produced by any node")
        return shapes

    def validate(self) -> Graph:
        """Re-run all structural and shape checks (done at construction); return self."""
        self._infer({t: self.input_shapes[t] for t in self.inputs})
        return self

    # ----------------------------------------------------------------- queries
    def producer(self, tensor: str) -> Node | None:
        """The node writing ``tensor``, or ``None`` for a graph input."""
        if tensor not in self.shapes:
            raise GraphError(f"unknown tensor {tensor!r}")
        return self._producer.get(tensor)  # type: ignore[attr-defined]

    def consumers(self, tensor: str) -> tuple[Node, ...]:
        """Nodes reading ``tensor``, in graph order (each node once)."""
        if tensor not in self.shapes:
            raise GraphError(f"unknown tensor {tensor!r}")
        return self._consumers.get(tensor, ())  # type: ignore[attr-defined]

    def layer(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self._by_name[name]  # type: ignore[attr-defined]
        except KeyError:
            known = ", ".join(repr(n.name) for n in self.nodes[:20])
            raise GraphError(f"no layer named {name!r}; layers are: {known}"
                             f"{' ...' if len(self.nodes) > 20 else ''}") from None

    def is_sole_use(self, tensor: str) -> bool:
        """True if ``tensor`` has exactly one consumer and is not a graph output."""
        return len(self.consumers(tensor)) == 1 and tensor not in self.outputs

    # ------------------------------------------------------------- rewriting
    def with_nodes(self, nodes: Iterable[Node], outputs: Iterable[str] | None = None) -> Graph:
        """A new graph with the same inputs/metadata and the given nodes (and outputs)."""
        return Graph(nodes=tuple(nodes), inputs=self.inputs, input_shapes=self.input_shapes,
                     outputs=self.outputs if outputs is None else tuple(outputs),
                     metadata=self.metadata, name=self.name)

    def replace_nodes(self, mapping: Mapping[str, Node | Iterable[Node] | None]) -> Graph:
        """Replace nodes by name with one node, a sequence of nodes, or nothing (``None``)."""
        for name in mapping:
            self.layer(name)
        out: list[Node] = []
        for n in self.nodes:
            if n.name not in mapping:
                out.append(n)
                continue
            new = mapping[n.name]
            if new is None:
                continue
            out.extend([new] if isinstance(new, Node) else new)
        return self.with_nodes(out)

    def rename_tensor(self, old: str, new: str) -> Graph:
        """Rename tensor ``old`` to ``new`` in every node and in the graph outputs.

        Graph inputs cannot be renamed.
        """
        if old in self.inputs:
            raise GraphError(f"cannot rename graph input {old!r}")
        nodes = [n.with_io(tuple(new if t == old else t for t in n.inputs),
                           tuple(new if t == old else t for t in n.outputs))
                 if old in n.inputs or old in n.outputs else n for n in self.nodes]
        return self.with_nodes(nodes, tuple(new if t == old else t for t in self.outputs))

    def __repr__(self) -> str:
        return (f"Graph(name={self.name!r}, {len(self.nodes)} nodes, inputs={self.inputs}, "
                f"outputs={self.outputs})")
