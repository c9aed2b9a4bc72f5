"""PNG plots of one run (matplotlib, headless): each answers one question the report asks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

from .summary import levels  # noqa: E402

FILES = {
    "latency": "latency_vs_concurrency.png",
    "throughput": "throughput_vs_instances.png",
    "failures": "failure_rate_vs_concurrency.png",
    "cold_warm": "cold_vs_warm.png",
}


def _legend(ax: Axes, **kwargs: Any) -> None:
    """A legend only where something was drawn (matplotlib warns on an empty one)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _instance_counts(results: dict[str, Any]) -> list[int]:
    return sorted({lv["instances"] for lv in levels(results, "fleet")})


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    rows = sorted(rows, key=lambda lv: lv["concurrency"])
    xs = [lv["concurrency"] for lv in rows if lv["ab"].get(key) is not None]
    ys = [float(lv["ab"][key]) for lv in rows if lv["ab"].get(key) is not None]
    return xs, ys


def _concurrency_axis(ax: Axes, results: dict[str, Any]) -> None:
    cs = sorted({lv["concurrency"] for lv in levels(results, "fleet")} | {lv["concurrency"]
                                                                        for lv in levels(results, "peer")})
    ax.set_xscale("log")
    if cs:
        ax.set_xticks(cs)
        ax.set_xticklabels([str(c) for c in cs])
        ax.minorticks_off()
    ax.set_xlabel("concurrency (ab -c)")
    ax.grid(True, alpha=0.3)


def latency(results: dict[str, Any], path: Path) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, mode in zip(axes, ("cold", "warm"), strict=True):
        for n in _instance_counts(results):
            xs, ys = _series(levels(results, "fleet", mode, n), "mean_ms")
            if xs:
                line = ax.plot(xs, ys, marker="o", label=f"{n} instance(s) mean")[0]
                px, py = _series(levels(results, "fleet", mode, n), "p99_ms")
                ax.plot(px, py, linestyle=":", color=line.get_color(), label=f"{n} instance(s) p99")
        if mode == "cold":
            xs, ys = _series(levels(results, "peer"), "mean_ms")
            if xs:
                ax.plot(xs, ys, marker="s", color="black", linestyle="--", label="rapidocr-api mean")
        ax.set_yscale("log")
        ax.set_ylabel("latency (ms, log)")
        ax.set_title(f"{mode}: latency vs concurrency")
        _concurrency_axis(ax, results)
        _legend(ax, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def throughput(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    counts = _instance_counts(results)
    best = [max((lv["ab"]["ok_per_s"] for lv in levels(results, "fleet", "cold", n)), default=0.0)
            for n in counts]
    ax.plot(counts, best, marker="o", label="fleet, cold (best 2xx/s over concurrency)")
    engine = results.get("engine") or {}
    if engine.get("limit_img_s"):
        ax.axhline(engine["limit_img_s"], color="red", label="engine limit, load image (all cores)")
    if engine.get("limit_set_img_s"):
        ax.axhline(engine["limit_set_img_s"], color="red", linestyle=":", label="engine limit, image set")
    peer = max((lv["ab"]["ok_per_s"] for lv in levels(results, "peer")), default=None)
    if peer:
        ax.axhline(peer, color="black", linestyle="--", label="rapidocr-api (best)")
    ax.set_xticks(counts)
    ax.set_xlabel("instances")
    ax.set_ylabel("images per second")
    ax.set_ylim(bottom=0)
    ax.set_title("cold throughput vs instances, against the engine limit")
    ax.grid(True, alpha=0.3)
    _legend(ax, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def failures(results: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for n in _instance_counts(results):
        for mode, style in (("cold", "-"), ("warm", "--")):
            rows = sorted(levels(results, "fleet", mode, n), key=lambda lv: lv["concurrency"])
            if rows:
                ax.plot([lv["concurrency"] for lv in rows], [lv["ab"]["failure_rate"] * 100 for lv in rows],
                        marker="o", linestyle=style, label=f"{n} instance(s), {mode}")
    rows = sorted(levels(results, "peer"), key=lambda lv: lv["concurrency"])
    if rows:
        ax.plot([lv["concurrency"] for lv in rows], [lv["ab"]["failure_rate"] * 100 for lv in rows],
                marker="s", color="black", linestyle=":", label="rapidocr-api")
    ax.set_ylabel("failed + non-2xx (% of requests)")
    ax.set_ylim(-2, 102)
    ax.set_title("failure rate vs concurrency (Length mismatches are not failures)")
    _concurrency_axis(ax, results)
    _legend(ax, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cold_warm(results: dict[str, Any], path: Path) -> None:
    full = (results.get("fleet") or {}).get("all_cores_instances")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    for ax, key, label in ((axes[0], "ok_per_s", "2xx requests per second"),
                           (axes[1], "median_ms", "median latency (ms)")):
        for mode, color in (("cold", "tab:blue"), ("warm", "tab:orange")):
            xs, ys = _series(levels(results, "fleet", mode, full), key)
            if xs:
                ax.plot(xs, ys, marker="o", color=color, label=mode)
        ax.set_yscale("log")
        ax.set_ylabel(label + " (log)")
        ax.set_title(f"cold vs warm at {full} instance(s): {label}")
        _concurrency_axis(ax, results)
        _legend(ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render_all(results: dict[str, Any], out_dir: Path) -> dict[str, str]:
    """Write every plot that has data; returns name -> file name, for the report's links."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if not levels(results, "fleet") and not levels(results, "peer"):
        return made
    for name, fn in (("latency", latency), ("throughput", throughput), ("failures", failures),
                     ("cold_warm", cold_warm)):
        fn(results, out_dir / FILES[name])
        made[name] = FILES[name]
    return made
