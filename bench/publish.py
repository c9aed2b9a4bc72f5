"""docs/benchmarks.md: how to run the bench and read it, then the latest full report with its plots."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from . import languages, plots, report, searchable
from .documents import kept_block
from .runner import backfill

PREFACE = """\
# Benchmarks

`bench/` measures OCR Fleet the way its users do, with `ab`, and holds it against two references: the
raw engine's limit on the same machine, and RapidOCR's own server (`rapidocr-api`) on the same images,
concurrency and cores. Every ratio on this page comes from one run: the machine is shared and noisy, so
numbers from different runs are not compared with each other.

## Running it

```
make up                # or let the bench start the fleet (it stops it again afterwards)
make bench             # python -m bench: the full matrix, under 30 minutes on 2 cores
make bench-quick       # python -m bench --quick: instances 2,1; concurrency 1,4,16; peer at c=4
make bench-gateway     # warm hits at c=50 via the gateway with API keys and its own cache vs one instance
python -m bench --images ~/photos        # your own photos instead of the generated set
python -m bench --instances 2 --concurrency 4,50 --no-peer   # any part of the matrix
python -m bench --smoke                  # self-test of the pipeline against a tiny built-in server
python -m bench --languages              # CER per language and reader, pages/s, lang=auto: its own section
python -m bench.engine_profiles --quick  # only the engine profiles table on the hard set
python -m bench.engine_profiles --engines  # only rapidocr vs paddleocr (accurate and fast) on the hard set
```

`--quick` measures the instance count that uses all cores first and has a 4-minute budget: past it, it
skips the other count and says so, so it ends within 5 minutes even when neighbours slow the machine;
the engine profiles table adds about 6 minutes on 2 cores, more since it also runs the second engine's two
variants (`--no-profiles` skips it).
The peer runs with as many workers as cores and one ONNX Runtime thread each (`--peer-threads 0` for
rapidocr's stock setting, a thread per core in every worker).

Each run writes `bench/results/<timestamp>/`: `report.md`, `results.json` (with the `summary` object other
tools read), the PNG plots, and `raw/` with every ab output and `-e` CSV, the fleetctl log and the
profiles. If the fleet was already up, the bench only rescales it and restores your instance count at the
end; if it started the fleet, it stops it. The peer server, ab and profilers are stopped on exit, also on
Ctrl-C or SIGTERM. `python -m bench --publish bench/results/<timestamp>` rewrites this page from a run;
`--rerender` rebuilds a run's report and plots from its `results.json`.

The steps:

1. **Engine limit.** The engine in-process, no HTTP: K spawned processes x 1 ONNX thread, K = 1..cores,
   each decoding and recognising from bytes exactly as an instance does; images per second over the set.
2. **Fleet through nginx with ab**, for instances {1, 2, 3, 5} and concurrency {1, 4, 8, 16, 32, 50}:
   *cold* (`Cache-Control: no-cache`, every request runs the engine) and *warm* (cache hits).
3. **Peer**: `rapidocr-api` in its own venv under `bench/.work/`, pinned to the fleet's rapidocr and
   onnxruntime versions so both use the same bundled PP-OCR models (it never downloads: the report
   checks its log), started as `rapidocr_api -ip 127.0.0.1 -p PORT -workers <cores>` and loaded with ab
   (multipart field `image_file`) at the same concurrencies.
4. **Memory**: each instance's RSS after its run, as `fleetctl status` reports it.
5. **Engine profiles** (`bench/engine_profiles.py`, `--no-profiles` skips it; `python -m bench.engine_profiles
   [--quick]` runs it alone): every profile, plus `accurate` under a pinned copy of the old settings and
   under each speed-up, and the second engine (`OCR_ENGINE=paddleocr`, from its own venv) on `accurate` and
   `fast`, one process each started with the environment an instance would give it, taking
   turns round by round over the hard set. Throughput and its ratio to `accurate` (wall and CPU seconds),
   peak RSS (the kernel's high-water mark, mid-run included), and character error against the committed
   truth, in reading order and with lines matched to lines. `balanced` runs only where the CPU decision
   offers it; the table ends with what the CPU offered, what was chosen and why, and the machine's load
   average at the start and the end.

## The hard set with truth

`bench/hardset.py` draws 900×1100 pages of dense small print (15–19 px) with random strings: Latin words
of random letters and numbers, and random common Chinese characters (GB2312 level 1), so no model can
guess. Each page gets one kind of damage: none, perspective, blur, low contrast, uneven light, JPEG
quality 12, turned 90°, turned 180°. The generator is deterministic from its seed; the truth (the lines
in upright reading order) is committed in `bench/truth/hard.json`, and `python -m bench.hardset --check`
fails if the generator no longer draws it. `bench/score.py` scores the character error rate (NFKC, spaces
ignored) two ways: the page read in the engine's line order against the truth's order, and lines matched
to lines (greedy by edit distance; unmatched truth lines and invented lines cost all their characters).


## Doing it by hand

```
# cold: every request runs OCR
ab -r -s 300 -n 8 -c 4 -H 'Cache-Control: no-cache' -p receipt.jpg -T image/jpeg -e cold.csv \\
   http://127.0.0.1:8080/api/ocr
# warm: one request fills the cache, then measure hits
curl -s -o /dev/null -H 'Content-Type: image/jpeg' --data-binary @receipt.jpg http://127.0.0.1:8080/api/ocr
ab -r -s 300 -n 4000 -c 50 -p receipt.jpg -T image/jpeg -e warm.csv http://127.0.0.1:8080/api/ocr
```

ab reports *Failed requests* including `Length`: a body whose length differs from the first response.
OCR answers differ in length, so those are not failures; real failures are Connect, Receive and
Exceptions. `Non-2xx responses` (503 when the instances' queues are full) is a separate line. ab's `-e`
CSV misreports its top rows (98, 99) when fewer than 100 requests finished; the bench corrects that.

"""


def demote(markdown: str) -> str:
    """One heading level down, so the report nests under this page's title."""
    return re.sub(r"^(#+) ", lambda m: "#" + m.group(1) + " ", markdown, flags=re.M)


def publish(run_dir: Path, docs: Path) -> Path:
    """Write docs/benchmarks.md and copy the run's PNGs into docs/benchmarks/."""
    results = backfill(json.loads((run_dir / "results.json").read_text(encoding="utf-8")), run_dir)
    assets = docs / "benchmarks"
    assets.mkdir(parents=True, exist_ok=True)
    made = {}
    for key, name in plots.FILES.items():
        if (run_dir / name).exists():
            shutil.copy2(run_dir / name, assets / name)
            made[key] = name
    body = report.render(results, made, asset_prefix="benchmarks/")
    body = demote(body).replace("## OCR Fleet benchmark:", "## Latest report:", 1)
    target = docs / "benchmarks.md"
    # the documents, searchable-PDF and languages benches publish sections of their own: keep them
    kept = [kept_block(target), kept_block(target, searchable.BEGIN, searchable.END),
            kept_block(target, languages.BEGIN, languages.END)]
    target.write_text(PREFACE + "".join(block + "\n" for block in kept if block) + body, encoding="utf-8")
    return target
