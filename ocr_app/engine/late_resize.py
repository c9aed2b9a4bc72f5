"""A detection model rewritten so that ONNX Runtime computes an FPN upsample when it is needed, not early.

In PP-OCR's detection neck a nearest-neighbour Resize that feeds an Add runs as soon as its input exists,
so its output is held through the convolutions of the other branch, at the model's peak. Taking the
Resize's output size from the Add's other input makes it wait for that branch: a lower peak, the same
output to the bit (the Add's inputs have one shape, and the size is exactly the scale's); ONNX Runtime's
own orders do not do it (docs/benchmarks.md). Only the big detections' session uses it
(engine/sessions.py); `verified` checks the answer against the file as it is.

The `onnx` package edits the model, in a child process (`python -m ocr_app.engine.late_resize SRC DST`):
importing it keeps memory in a process for good, so a worker never does. The child writes the result to
a cache file named by the source's sha256, which every worker and restart reuses.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ocr_app.digest import sha256_file

if TYPE_CHECKING:
    import onnx

EMPTY_SCALES = "late_resize.empty_scales"
REWRITE = "v1"  # part of the cache file's name: a change to the rewrite gets a new file
NOTHING_TO_REWRITE = 3  # the child's exit status for a model without such upsamples
CHILD_TIMEOUT = 120.0  # seconds; far above what PP-OCR's detection takes


class RewriteError(RuntimeError):
    """No rewritten model: the child failed, timed out, or found nothing to rewrite."""


def cache_dir() -> Path:
    """Where rewritten models are kept: $XDG_CACHE_HOME (else ~/.cache)/ocr-fleet/late-resize."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ocr-fleet" / "late-resize"


def rewritten(model: Path, cache: Path, timeout: float = CHILD_TIMEOUT) -> Path:
    """The cached rewrite of `model`, made by a child process if it is not there yet."""
    target = cache / f"{sha256_file(model)}.{REWRITE}.onnx"
    if target.is_file():
        return target
    try:
        child = subprocess.run([sys.executable, "-m", __name__, str(model), str(target)],
                               capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RewriteError(f"the rewrite took over {timeout:g} s") from exc
    if child.returncode == NOTHING_TO_REWRITE:
        raise RewriteError("no Resize that feeds an Add")
    if child.returncode != 0 or not target.is_file():
        lines = child.stderr.strip().splitlines()
        raise RewriteError(f"the rewrite exited with {child.returncode}: {lines[-1] if lines else 'no message'}")
    return target


def late_resizes(model: onnx.ModelProto) -> int:
    """Size every Resize that feeds only an Add from the Add's other input, in place; how many."""
    from onnx import TensorProto, helper

    graph = model.graph
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        consumers = users.get(node.output[0], []) if len(node.output) == 1 else []
        others = [name for name in consumers[0].input if name != node.output[0]] if len(consumers) == 1 else []
        if (node.op_type == "Resize" and len(node.input) == 3 and node.input[2] and len(others) == 1
                and consumers[0].op_type == "Add" and len(consumers[0].input) == 2):
            sizes = f"{node.name or node.output[0]}.late_sizes"
            nodes.append(helper.make_node("Shape", [others[0]], [sizes], name=f"{sizes}.shape"))
            # opset 11's Resize wants `scales` present when `sizes` is given: an empty tensor
            node.input[:] = [*node.input[:2], EMPTY_SCALES, sizes]
        nodes.append(node)
    count = len(nodes) - len(graph.node)
    if count:
        graph.ClearField("node")
        graph.node.extend(nodes)
        graph.initializer.append(helper.make_tensor(EMPTY_SCALES, TensorProto.FLOAT, [0], []))
    return count


def rewrite_file(source: Path, target: Path) -> int:
    """Write `source` rewritten to `target` (atomically, checked by onnx.checker); how many upsamples."""
    import onnx

    model = onnx.load_model(str(source))
    count = late_resizes(model)
    if not count:
        return 0
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, target)  # another worker may be writing the same file: each rename is whole
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def main(argv: list[str]) -> int:
    """`python -m ocr_app.engine.late_resize SRC DST`: 0 when written, NOTHING_TO_REWRITE, 1 on an error."""
    if len(argv) != 2:
        print("usage: python -m ocr_app.engine.late_resize SOURCE.onnx TARGET.onnx", file=sys.stderr)
        return 2
    try:
        count = rewrite_file(Path(argv[0]), Path(argv[1]))
    except Exception as exc:  # noqa: BLE001 - reported to the worker as one line, which falls back
        print(f"{type(exc).__name__}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    return 0 if count else NOTHING_TO_REWRITE


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


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
