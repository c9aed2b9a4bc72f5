"""OpenVINO as the runtime of a profile: the ONNX files compiled by OpenVINO's CPU plugin, in the precision
the CPU decision chose (bf16 where the CPU computes it natively), handed to rapidocr like ONNX Runtime
sessions.

rapidocr's own OpenVINO engine sets neither the inference precision nor the sessions' sharing, and its
session hook takes only ONNX Runtime sessions, so `OpenVinoSession` answers the part of ONNX Runtime's
InferenceSession that rapidocr and models.profiles.validate use (run, inputs, outputs, model metadata). One
compiled model and one infer request per stage, built in the worker after fork; calls are serialized by
the engine's lock, so one request per model is enough.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

# Recognition inputs are padded to a multiple of this width: a run whose shape differs from the one before
# costs more (OpenVINO prepares the graph again), and lines of similar width then share a shape.
REC_WIDTH_BUCKET = 64


@dataclass(frozen=True)
class _Arg:
    """What ONNX Runtime's NodeArg tells rapidocr: a name and a shape (None or str for dynamic axes)."""

    name: str
    shape: list[int | str | None]


@dataclass(frozen=True)
class _Meta:
    custom_metadata_map: dict[str, str]


@lru_cache(maxsize=1)
def core() -> Any:
    """The worker's one OpenVINO Core (created after fork: Core holds threads)."""
    import openvino as ov

    return ov.Core()


def compile_config(precision: str, threads: int) -> dict[str, str]:
    """CPU plugin settings: the chosen precision, OCR_THREADS threads, one stream, no pinning.

    One stream and latency mode because the engine runs one request at a time; no pinning because several
    instances share the cores.
    """
    return {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": str(threads),
        "NUM_STREAMS": "1",
        "PERFORMANCE_HINT": "LATENCY",
        # The default keeps up to 5000 shape-specific kernels: RSS grew without end with the sizes of the
        # pages; without the cache it stays flat at the same speed.
        "CPU_RUNTIME_CACHE_CAPACITY": "0",
        "ENABLE_CPU_PINNING": "NO",
    }


def _metadata(model: Any) -> dict[str, str]:
    """The ONNX file's metadata_props (rapidocr's recognizer keeps its dictionary there)."""
    if not model.has_rt_info(["framework"]):
        return {}
    keys = model.get_rt_info(["framework"]).astype(dict)
    return {str(key): str(model.get_rt_info(["framework", key]).value) for key in keys}


def _shape(partial: Any) -> list[int | str | None]:
    return [d.get_length() if d.is_static else None for d in partial]


class OpenVinoSession(ort.InferenceSession):
    """A compiled OpenVINO model behind ONNX Runtime's session interface.

    It subclasses InferenceSession only so that rapidocr's session hook accepts it; ONNX Runtime's
    constructor is never called and none of its state is used.
    """

    def __init__(self, path: Path, precision: str, threads: int, width_bucket: int = 0) -> None:
        ov_core = core()
        model = ov_core.read_model(str(path))
        self._meta = _Meta(_metadata(model))
        self._inputs = [_Arg(p.get_any_name(), _shape(p.get_partial_shape())) for p in model.inputs]
        self._outputs = [_Arg(p.get_any_name(), _shape(p.get_partial_shape())) for p in model.outputs]
        self._compiled = ov_core.compile_model(model, "CPU", compile_config(precision, threads))
        self._request = self._compiled.create_infer_request()
        self.precision = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self._bucket = width_bucket
        self._busy = threading.Lock()  # OpenVINO refuses to release a model while it runs

    def run(self, output_names: Any, input_feed: dict[str, np.ndarray], run_options: Any = None) -> list[np.ndarray]:
        """Infer and copy the outputs out: the request's buffers are overwritten by its next run."""
        width = 0
        if self._bucket and len(input_feed) == 1:
            (name, x), = input_feed.items()
            width = x.shape[-1]
            padded = -(-width // self._bucket) * self._bucket
            if padded != width:  # zeros: rapidocr's own padding of a batch to its widest line
                input_feed = {name: np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, padded - width)])}
            else:
                width = 0
        with self._busy:
            self._request.infer(input_feed)
            outputs = [np.array(self._request.get_output_tensor(i).data) for i in range(len(self._outputs))]
        if width:  # back to the time steps of the unpadded width, so word boxes stay where they were
            steps = outputs[0].shape[1]
            stride = padded // steps
            outputs[0] = outputs[0][:, :(width + stride // 2 - 1) // stride]
        return outputs

    def release(self) -> None:
        """Hand the intermediate tensors back: OpenVINO otherwise keeps the biggest shape's buffers for good.
        Releasing after every run costs CPU, so the engine does it when the profile goes idle
        (sessions.IdleRelease), as with ONNX Runtime's arenas."""
        with self._busy:
            self._compiled.release_memory()

    def get_inputs(self) -> list[_Arg]:
        return list(self._inputs)

    def get_outputs(self) -> list[_Arg]:
        return list(self._outputs)

    def get_modelmeta(self) -> _Meta:
        return self._meta

    def get_providers(self) -> list[str]:
        return ["OpenVINO CPU"]
