"""`python -m bench`: the load-test matrix in one command (`--quick` for the short form).

The command only parses options and calls the runner; `--publish` copies a finished run into
docs/benchmarks.md, and `--rerender` rebuilds a run's report and plots from its results.json.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from . import plan as plans
from . import smoke as smoke_mod
from .publish import publish
from .runner import REPO, Options, Run, write_outputs


def _ints(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise click.BadParameter(f"expected positive integers, got {text!r}")
    return values


_T0 = time.monotonic()


def _say(message: str) -> None:
    """Progress on stderr with the elapsed time, so a slow step is visible while it runs."""
    elapsed = int(time.monotonic() - _T0)
    click.echo(f"[{elapsed // 60:02d}:{elapsed % 60:02d}] {message}", err=True)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--quick", is_flag=True, help="The short form: instances 1,2; concurrency 1,4,16; peer at c=4.")
@click.option("--smoke", is_flag=True, help="Pipeline self-test against a tiny built-in server (seconds).")
@click.option("--images", "images_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of real photos instead of the generated set.")
@click.option("--url", help="OCR endpoint to load [default: the gateway from `fleetctl status` + /api/ocr].")
@click.option("--instances", help="Instance counts, e.g. 1,2,3,5.")
@click.option("--concurrency", help="Concurrency levels for cold, warm and peer runs, e.g. 1,4,16.")
@click.option("--load-image", help="Name of the set image ab posts [default: the one nearest the mean cost].")
@click.option("--peer-workers", type=click.IntRange(min=1), help="rapidocr_api -workers [default: cores].")
@click.option("--peer-threads", type=click.IntRange(min=0), default=1, show_default=True,
              help="ONNX Runtime threads per rapidocr-api worker; 0 = rapidocr's stock default.")
@click.option("--no-engine", is_flag=True, help="Skip the in-process engine limit.")
@click.option("--no-profiles", is_flag=True, help="Skip the engine profiles table (hard set with truth).")
@click.option("--no-fleet", is_flag=True, help="Skip the fleet matrix.")
@click.option("--no-peer", is_flag=True, help="Skip rapidocr-api.")
@click.option("--profile/--no-profile", default=None, help="py-spy profiles of one instance [default: full only].")
@click.option("--out", "out_root", type=click.Path(file_okay=False, path_type=Path),
              help="Where run folders go [default: bench/results].")
@click.option("--fleetctl", "fleetctl_cmd", help="fleetctl command line [default: python -m fleetctl].")
@click.option("--publish", "publish_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Copy a finished run's report and plots into docs/benchmarks.md and stop.")
@click.option("--docs", "docs_dir", type=click.Path(file_okay=False, path_type=Path), default=REPO / "docs",
              show_default="docs/", help="Where --publish writes benchmarks.md.")
@click.option("--documents", "documents", is_flag=True,
              help="Only the documents bench: a 12-page document through the gateway on 1, 2 and 3 instances; "
                   "writes its section of docs/benchmarks.md.")
@click.option("--searchable", "searchable", is_flag=True,
              help="Only the searchable-PDF bench: format=pdf against format=json on 1 and 2 instances, and "
                   "OCRmyPDF with the fleet's plugin against OCRmyPDF with Tesseract; writes its section of "
                   "docs/benchmarks.md.")
@click.option("--languages", "languages", is_flag=True,
              help="Only the languages bench: line-matched CER per language of PP-OCR (accurate, fast), Tesseract "
                   "(psm 6, 3) and the fleet's lang= and lang=auto on generated scans and photos, with pages/s; "
                   "writes its section of docs/benchmarks.md.")
@click.option("--rerender", "rerender_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Rebuild report.md and the plots of a finished run from its results.json and stop.")
def main(quick: bool, smoke: bool, images_dir: Path | None, url: str | None, instances: str | None,
         concurrency: str | None, load_image: str | None, peer_workers: int | None, peer_threads: int,
         no_engine: bool, no_profiles: bool,
         no_fleet: bool, no_peer: bool, profile: bool | None, out_root: Path | None, fleetctl_cmd: str | None,
         publish_dir: Path | None, docs_dir: Path, rerender_dir: Path | None, documents: bool,
         searchable: bool, languages: bool) -> None:
    """Measure the engine limit, the fleet through nginx with ab (cold and warm), and rapidocr-api."""
    if documents or searchable or languages:
        name = "documents" if documents else "searchable" if searchable else "languages"
        click.echo(section_run(name, out_root, docs_dir, fleetctl_cmd, _ints(instances)))
        return
    if publish_dir:
        click.echo(publish(publish_dir, docs_dir))
        return
    if rerender_dir:
        results = json.loads((rerender_dir / "results.json").read_text(encoding="utf-8"))
        write_outputs(results, rerender_dir)
        click.echo(rerender_dir / "report.md")
        return
    if smoke:
        click.echo(smoke_run(out_root))
        return
    plan = plans.QUICK if quick else plans.FULL
    changes: dict[str, object] = {}
    if (counts := _ints(instances)) is not None:
        changes["instances"] = counts
    if (levels := _ints(concurrency)) is not None:
        changes.update(cold_concurrency=levels, warm_concurrency=levels, peer_concurrency=levels)
    if profile is not None:
        changes["profile_s"] = plans.FULL.profile_s if profile else 0.0
    changes.update({k: False for k, off in (("engine", no_engine), ("profiles", no_profiles), ("fleet", no_fleet),
                                                    ("peer", no_peer)) if off})
    opts = Options(plan=plan.replace(**changes), images_dir=images_dir, url=url, load_image=load_image,
                   peer_workers=peer_workers, peer_threads=peer_threads,
                   fleetctl=fleetctl_cmd.split() if fleetctl_cmd else None)
    if out_root:
        opts.out_root = out_root
    out_dir = Run(opts, _say).execute()
    results = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    click.echo(out_dir / "report.md")
    for check in results.get("targets", []):
        _say(f"  {check['label']}: {check['value']} -> {check['gap']}")
    if results.get("error"):
        sys.exit(130 if results.get("interrupted") else 1)


def section_run(name: str, out_root: Path | None, docs_dir: Path, fleetctl_cmd: str | None,
                counts: tuple[int, ...] | None) -> Path:
    """One bench with a section of its own (`documents`, `searchable` or `languages`): results.json and report.md in a
    run folder, and its section of docs/benchmarks.md."""
    from datetime import datetime
    from importlib import import_module

    from .fleet import FleetCtl, FleetSession, default_command

    bench = import_module(f"bench.{name}")
    started = datetime.now().astimezone()
    out_dir = (out_root or REPO / "bench" / "results") / f"{started:%Y%m%d-%H%M%S}-{name}"
    out_dir.mkdir(parents=True, exist_ok=True)
    ctl = FleetCtl(out_dir / "fleetctl.log", fleetctl_cmd.split() if fleetctl_cmd else default_command())
    with FleetSession(ctl) as session:
        results = bench.run(session, _say, counts=counts or bench.COUNTS)
    results["fleet"] = session.note
    (out_dir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    block = bench.report(results, started.isoformat(timespec="seconds"))
    (out_dir / "report.md").write_text(block, encoding="utf-8")
    bench.publish(block, docs_dir / "benchmarks.md")
    for key in ("speedup_2_over_1", "pdf_2_over_1"):
        if key in results:
            _say(f"{name}: 2 instances / 1 = {results[key]}x")
    return out_dir / "report.md"


def smoke_run(out_root: Path | None) -> Path:
    return smoke_mod.run(out_root, _say) / "report.md"


if __name__ == "__main__":
    main()
