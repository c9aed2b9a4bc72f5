"""`python -m bench.autoscale_trace`: one autoscaling scenario on a fresh fleet, traced and plotted.

A fleet of its own (temp FLEET_HOME, free ports, process backend) runs `up --autoscale MIN:MAX`, then
ab drives a load profile of cold requests (`Cache-Control: no-cache`, so each one runs the engine):
idle, a light step at the target, a heavy step, idle again until the fleet is back to MIN. Every
second the autoscaler's state (load, CPU, count, target, last change) and the nginx upstream are
sampled; the trace is written as JSON and plotted as a PNG (docs/benchmarks/autoscale_trace.png).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import matplotlib

matplotlib.use("Agg")  # no display on servers or in CI
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from fleetctl import config as fleet_config  # noqa: E402
from fleetctl.autoscale import loop as autoscale
from fleetctl.backends import make_backend  # noqa: E402
from fleetctl.gateway import upstream
from fleetctl.procs import free_port  # noqa: E402

from .images import find_font  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PNG = REPO / "docs" / "benchmarks" / "autoscale_trace.png"
RAW = REPO / "bench" / "results" / "autoscale-trace.json"


@dataclass(frozen=True)
class Step:
    """`seconds` of ab at `concurrency` (0: no load)."""

    seconds: int
    concurrency: int


def word_png(path: Path) -> None:
    """A one-word image: about a second of OCR on one core."""
    img = Image.new("RGB", (320, 64), "white")
    font = ImageFont.truetype(find_font("DejaVu Sans", "Book", "fonts-dejavu-core"), 36)
    ImageDraw.Draw(img).text((12, 10), "fleet", fill="black", font=font)
    img.save(path)


def ab_failures(text: str) -> dict[str, int]:
    """ab's verdict with Length apart (OCR bodies differ in length: not a failure)."""
    def num(pattern: str) -> int:
        m = re.search(pattern, text)
        return int(m.group(1)) if m else 0

    return {"complete": num(r"Complete requests:\s+(\d+)"), "failed": num(r"Failed requests:\s+(\d+)"),
            "connect": num(r"Connect: (\d+), Receive"), "receive": num(r"Receive: (\d+)"),
            "length": num(r"Length: (\d+)"), "exceptions": num(r"Exceptions: (\d+)"),
            "non_2xx": num(r"Non-2xx responses:\s+(\d+)")}


class Tracer:
    """Samples the autoscaler's state file and the upstream once a second, in a thread."""

    def __init__(self, cfg: fleet_config.FleetConfig) -> None:
        self.cfg, self.offered = cfg, 0
        self.backend = make_backend(cfg.backend, cfg)  # the runtime's count, current during a scale too
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.t0 = time.monotonic()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            state = autoscale.read_state(self.cfg)
            self.rows.append({
                "t": round(time.monotonic() - self.t0, 1), "offered": self.offered,
                "load": state.get("load"), "cpu": state.get("cpu"), "instances": len(self.backend.instances()),
                "target": state.get("target"), "upstream": len(upstream.upstream_members(self.cfg)),
                "decision": (state.get("last_decision") or {}).get("line"),
                "change": (state.get("last_change") or {}).get("line"),
            })

    def changes(self) -> list[dict[str, Any]]:
        """The first row at which each new scaling change showed up."""
        seen, out = None, []
        for row in self.rows:
            if row["change"] and row["change"] != seen:
                seen = row["change"]
                out.append({"t": row["t"], "change": seen})
        return out


def plot(trace: dict[str, Any], path: Path) -> None:
    rows = trace["rows"]
    t = [r["t"] for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [1, 1]})
    top.step(t, [r["offered"] for r in rows], where="post", label="ab concurrency (offered)", color="tab:gray")
    top.plot(t, [r["load"] if r["load"] is not None else float("nan") for r in rows],
             label="in-flight + queued jobs (from /metrics)", color="tab:blue")
    top.plot(t, [r["cpu"] if r["cpu"] is not None else float("nan") for r in rows],
             label="CPU cores used by the instances", color="tab:orange", linestyle="--")
    top.set_ylabel("load")
    top.legend(loc="upper right", fontsize=8)
    bottom.step(t, [r["instances"] or 0 for r in rows], where="post", label="instances (backend)", color="tab:green")
    bottom.step(t, [r["upstream"] for r in rows], where="post", label="in the nginx upstream", color="tab:purple",
                linestyle=":")
    bottom.step(t, [r["target"] or 0 for r in rows], where="post", label="autoscaler target", color="tab:red",
                linestyle="--", alpha=0.7)
    for i, change in enumerate(trace["changes"]):
        for ax in (top, bottom):
            ax.axvline(change["t"], color="tab:red", alpha=0.25)
        short = change["change"].split(" [", 1)[0].replace("scale ", "").replace(" -> ", "→")
        bottom.annotate(f" {short}", (change["t"], trace["max"] + 0.2 + 0.4 * (i % 2)), fontsize=8,
                        ha="left", color="tab:red")
    bottom.set_ylim(0, trace["max"] + 1)
    bottom.set_ylabel("instances")
    bottom.set_xlabel("seconds")
    bottom.legend(loc="center right", fontsize=8)
    s = trace["settings"]
    fig.suptitle(f"fleetctl autoscale {trace['min']}:{trace['max']} under cold ab load (target {s['target']} "
                 f"jobs/worker, up window {s['up']}s, down window {s['down']}s, cooldown {s['cooldown']}s)",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(lo: int, hi: int, steps: list[Step], down_window: float, cooldown: float, say: Any) -> dict[str, Any]:
    home = Path(tempfile.mkdtemp(prefix="ocr-autoscale-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEET_", "OCR_"))}
    env.update(FLEET_HOME=str(home), FLEET_BACKEND="process", FLEET_GATEWAY_PORT=str(free_port()),
               FLEET_CONSUL_PORT=str(free_port()), FLEET_REDIS_PORT=str(free_port()),
               FLEET_BASE_PORT=os.environ.get("FLEET_BASE_PORT", "18700"),
               FLEET_AUTOSCALE_DOWN_WINDOW=str(down_window), FLEET_AUTOSCALE_COOLDOWN=str(cooldown),
               FLEET_AUTOSCALE_POLL="1", FLEET_AUTOSCALE_UP_WINDOW="5")
    # Consul from where `make deps` put it (the user's FLEET_HOME/bin), as the fleet's own `up` would find it.
    env["PATH"] = os.pathsep.join([str(fleet_config.default_home(os.environ) / "bin"), env.get("PATH", "")])
    cfg = fleet_config.load(env)
    image = home / "word.png"
    word_png(image)
    fleetctl = [sys.executable, "-m", "fleetctl"]
    subprocess.run([*fleetctl, "up", "-n", str(lo), "--autoscale", f"{lo}:{hi}"], env=env, check=True)
    tracer = Tracer(cfg)
    tracer.thread.start()
    abs_: list[dict[str, Any]] = []
    try:
        for step in steps:
            say(f"{step.seconds}s at c={step.concurrency}")
            tracer.offered = step.concurrency
            if step.concurrency == 0:
                time.sleep(step.seconds)
                continue
            out = subprocess.run(
                ["ab", "-q", "-t", str(step.seconds), "-n", "1000000", "-c", str(step.concurrency), "-s", "60",
                 "-H", "Cache-Control: no-cache", "-p", str(image), "-T", "image/png", f"{cfg.gateway_url}/api/ocr"],
                capture_output=True, text=True, check=False, env=env).stdout
            abs_.append({"concurrency": step.concurrency, "seconds": step.seconds, **ab_failures(out)})
        tracer.offered = 0
        deadline = time.monotonic() + down_window + 120
        while time.monotonic() < deadline and (autoscale.read_state(cfg).get("current") or 0) > lo:
            time.sleep(1)
        time.sleep(10)
    finally:
        tracer.stop.set()
        tracer.thread.join()
        subprocess.run([*fleetctl, "down"], env=env, check=False)
        shutil.rmtree(home, ignore_errors=True)
    return {"min": lo, "max": hi, "settings": {"target": cfg.autoscale_target, "up": cfg.autoscale_up_window,
                                                  "down": down_window, "cooldown": cooldown, "poll": 1},
            "steps": [vars(s) for s in steps], "ab": abs_, "rows": tracer.rows, "changes": tracer.changes()}


@click.command()
@click.option("--min", "lo", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--max", "hi", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--scale-down-window", "down", type=click.FloatRange(min=0), default=60, show_default=True)
@click.option("--cooldown", type=click.FloatRange(min=0), default=10, show_default=True)
@click.option("--steps", default="15:0,40:2,60:8", show_default=True,
              help="SECONDS:CONCURRENCY,... of cold ab load; idle follows until the fleet is back to --min.")
@click.option("--png", type=click.Path(path_type=Path), default=PNG, show_default=True)
def main(lo: int, hi: int, down: float, cooldown: float, steps: str, png: Path) -> None:
    """Run the autoscaling scenario on a fresh fleet and plot load, instances and decisions over time."""
    try:
        parsed = [Step(int(a), int(b)) for a, b in (part.split(":") for part in steps.split(","))]
    except ValueError:
        raise click.BadParameter(f"expected SECONDS:CONCURRENCY,..., got {steps!r}") from None
    trace = run(lo, hi, parsed, down, cooldown, lambda m: click.echo(m, err=True))
    RAW.parent.mkdir(parents=True, exist_ok=True)
    RAW.write_text(json.dumps(trace, indent=1) + "\n", encoding="utf-8")
    plot(trace, png)
    for change in trace["changes"]:
        click.echo(f"t={change['t']:>6.1f}s  {change['change']}")
    for ab in trace["ab"]:
        real = ab["connect"] + ab["receive"] + ab["exceptions"] + ab["non_2xx"]
        click.echo(f"ab c={ab['concurrency']} {ab['seconds']}s: {ab['complete']} requests, {real} failed "
                   f"({ab['length']} Length-only not counted)")
    click.echo(f"trace: {RAW.relative_to(REPO)}, plot: {png}")


if __name__ == "__main__":
    main()
