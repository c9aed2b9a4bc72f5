"""A detection model rewritten so that ONNX Runtime computes an FPN upsample when it is needed, not early.

ONNX Runtime runs a graph in an order of its own choosing and frees each tensor after its last use. In
PP-OCR's detection neck a nearest-neighbour Resize that feeds an Add runs as soon as its input exists,
so its output (96x400x400 floats, 59 MB at the 1600 px cap) is held through the convolutions of the
other branch: the model's peak (285 MiB over its input, measured with the node profile). Taking the
Resize's output size from the Add's other input makes it wait for that branch: peak 246 MiB, the same
output to the bit (the Add's inputs have one shape, and the size is exactly the scale's). Only the big
detections' session uses it (engine.py); `verified` checks the answer against the file as it is.

The rewrite edits the protobuf wire format directly: the `onnx` package would do it too, but importing
it costs every worker ~11 MiB of RSS for good (measured), a third of what the rewrite saves.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Field numbers of onnx.proto: ModelProto.graph, GraphProto.node / .initializer, NodeProto.input /
# .output / .name / .op_type, TensorProto.dims / .data_type / .name
MODEL_GRAPH, GRAPH_NODE, GRAPH_INITIALIZER = 7, 1, 5
NODE_INPUT, NODE_OUTPUT, NODE_NAME, NODE_OP = 1, 2, 3, 4
TENSOR_DIMS, TENSOR_TYPE, TENSOR_NAME = 1, 2, 8
FLOAT = 1
LENGTH_DELIMITED = 2
EMPTY_SCALES = "late_resize.empty_scales"


class RewriteError(ValueError):
    """The model is not protobuf as ONNX writes it."""


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise RewriteError("truncated varint")
        byte = buf[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if byte < 0x80:
            return value, pos
        shift += 7


def _put_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _fields(buf: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(field number, wire type, the field's bytes as written, its payload if length-delimited)."""
    pos = 0
    while pos < len(buf):
        start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        payload = b""
        if wire == 0:
            _, pos = _varint(buf, pos)
        elif wire == 1:
            pos += 8
        elif wire == LENGTH_DELIMITED:
            size, pos = _varint(buf, pos)
            payload, pos = buf[pos:pos + size], pos + size
        elif wire == 5:
            pos += 4
        else:
            raise RewriteError(f"wire type {wire} is not written by ONNX")
        if pos > len(buf):
            raise RewriteError("truncated field")
        yield number, wire, buf[start:pos], payload


def _delimited(number: int, payload: bytes) -> bytes:
    return _put_varint(number << 3 | LENGTH_DELIMITED) + _put_varint(len(payload)) + payload


@dataclass
class _Node:
    raw: bytes
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    name: str = ""
    op: str = ""
    rest: list[bytes] = field(default_factory=list)  # every other field, as written

    @classmethod
    def parse(cls, raw: bytes) -> _Node:
        node = cls(raw)
        for number, wire, written, payload in _fields(raw):
            text = payload.decode() if wire == LENGTH_DELIMITED and number in (1, 2, 3, 4) else ""
            if number == NODE_INPUT:
                node.inputs.append(text)
            elif number == NODE_OUTPUT:
                node.outputs.append(text)
            elif number == NODE_NAME:
                node.name = text
            elif number == NODE_OP:
                node.op = text
            if number != NODE_INPUT:
                node.rest.append(written)
        return node

    def with_inputs(self, inputs: list[str]) -> bytes:
        return b"".join(_delimited(NODE_INPUT, name.encode()) for name in inputs) + b"".join(self.rest)


def _shape_node(source: str, output: str, name: str) -> bytes:
    return (_delimited(NODE_INPUT, source.encode()) + _delimited(NODE_OUTPUT, output.encode())
            + _delimited(NODE_NAME, name.encode()) + _delimited(NODE_OP, b"Shape"))


def _empty_floats(name: str) -> bytes:
    """A float tensor of shape [0]: opset 11's Resize wants `scales` present when `sizes` is given."""
    return (_put_varint(TENSOR_DIMS << 3) + _put_varint(0) + _put_varint(TENSOR_TYPE << 3) + _put_varint(FLOAT)
            + _delimited(TENSOR_NAME, name.encode()))


def late_resizes(model: bytes) -> tuple[bytes, int]:
    """The model with every Resize that feeds only an Add sized from the Add's other input; and how many."""
    graph_fields = []
    graph = None
    for number, _, written, payload in _fields(model):
        if number == MODEL_GRAPH:
            graph = payload
        graph_fields.append((number, written))
    if graph is None:
        raise RewriteError("no graph in the model")
    parts = [(number, written, payload) for number, _, written, payload in _fields(graph)]
    nodes = {i: _Node.parse(payload) for i, (number, _, payload) in enumerate(parts) if number == GRAPH_NODE}
    users: dict[str, list[_Node]] = {}
    for node in nodes.values():
        for name in node.inputs:
            users.setdefault(name, []).append(node)
    rewritten: dict[int, bytes] = {}
    for i, node in nodes.items():
        if node.op != "Resize" or len(node.inputs) != 3 or not node.inputs[2] or len(node.outputs) != 1:
            continue
        consumers = users.get(node.outputs[0], [])
        if len(consumers) != 1 or consumers[0].op != "Add" or len(consumers[0].inputs) != 2:
            continue
        other = next((name for name in consumers[0].inputs if name != node.outputs[0]), None)
        if other is None:
            continue
        sizes = f"{node.name or node.outputs[0]}.late_sizes"
        rewritten[i] = (_delimited(GRAPH_NODE, _shape_node(other, sizes, f"{sizes}.shape"))
                        + _delimited(GRAPH_NODE, node.with_inputs([*node.inputs[:2], EMPTY_SCALES, sizes])))
    if not rewritten:
        return model, 0
    new_graph = b"".join(rewritten.get(i, written) for i, (_, written, _) in enumerate(parts))
    new_graph += _delimited(GRAPH_INITIALIZER, _empty_floats(EMPTY_SCALES))
    out = b"".join(_delimited(MODEL_GRAPH, new_graph) if number == MODEL_GRAPH else written
                   for number, written in graph_fields)
    return out, len(rewritten)


def verified(original: Any, rewritten: Any, side: int = 96) -> bool:
    """Both sessions give the same output to the bit on a small noisy input (a model whose Add
    broadcasts would not)."""
    name = original.get_inputs()[0].name
    x = np.random.default_rng(0).uniform(-2, 2, (1, 3, side, side + 32)).astype(np.float32)
    try:
        want, got = original.run(None, {name: x}), rewritten.run(None, {name: x})
    except Exception:  # noqa: BLE001 - a model the rewrite broke is simply not used
        return False
    return len(want) == len(got) and all(np.array_equal(a, b) for a, b in zip(want, got, strict=True))
