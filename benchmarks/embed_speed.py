"""Benchmark: whole-process ``reid-search index`` throughput, the default model against OSNet-x0.25.

A copy of cuhk03-mars ``bbox_train`` (7,239 real JPEGs) is indexed from scratch by the
real command line, start-up included, in turn with the default model (its fast LiteRT
runtime, chosen automatically) and with OSNet-x0.25 through onnxruntime (its card in
benchmarks/peers/), ``--runs`` times each. ``--runtimes`` adds the default model run by
Keras and by onnxruntime (an ONNX export), to compare the fast formats. Images/s =
images / wall seconds; the ratio is taken between the default's and OSNet's medians
(and best runs).

    python -m venv /tmp/plain && /tmp/plain/bin/pip install . && /tmp/plain/bin/pip install onnxruntime
    /tmp/plain/bin/python benchmarks/embed_speed.py [--runs 3]

The ``reid-search`` timed is the one beside the Python running the script: run from a venv
made by a plain ``pip install .`` (no extras; onnxruntime added for the peer only), the
default's number is what a plain install gets. The JSON records which runtime the default
used there and whether it said it fell back to a slow path.

Writes ``benchmarks/results/embed_speed.json``. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PEER_CARDS, REPO, RESULTS  # noqa: E402

SOURCE = REPO.parent / "shared" / "data" / "cuhk03-mars" / "bbox_train"
OUT = RESULTS / "embed_speed.json"
CLI = str(Path(sys.executable).parent / "reid-search")  # this environment's command
MODELS = {
    "default (LiteRT)": None,
    "osnet_x0_25 (onnxruntime)": PEER_CARDS["osnet_x0_25"],
}


def one_run(data: Path, model: Path | None, indexes: Path) -> float:
    shutil.rmtree(indexes, ignore_errors=True)
    command = [CLI, "index", str(data), "--name", "speed", "--indexes-dir", str(indexes), "--quiet"]
    if model is not None:
        command += ["--model", str(model)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def runtime_variants(tmp: Path) -> dict[str, Path]:
    """The default model run by Keras (a copy whose card names no fast file) and by onnxruntime."""
    from reid_search.embedding.export import export_model
    from reid_search.embedding.model_store import DEFAULT_MODEL, read_card, write_card

    folder = tmp / "variants"
    folder.mkdir()
    keras_copy = folder / "default.keras"
    shutil.copyfile(DEFAULT_MODEL, keras_copy)
    card = read_card(DEFAULT_MODEL)
    card.fast_runtime = None
    write_card(keras_copy, card)
    onnx_file = export_model(keras_copy, "onnx", folder / "default-onnx.onnx", link=False)
    return {"default (Keras)": keras_copy, "default (ONNX, onnxruntime)": onnx_file}


def environment() -> dict:
    """How this Python's reid-search is installed and which runtime its default model uses."""
    probe = (
        "import io, contextlib, sys\n"
        "err = io.StringIO()\n"
        "with contextlib.redirect_stderr(err):\n"
        "    from reid_search.embedding.backends import open_model\n"
        "    backend = type(open_model()).__name__\n"
        "import importlib.util as u\n"
        "print(backend, [m for m in ('onnxruntime', 'openvino', 'fastapi', 'ray', 'av') if u.find_spec(m)],"
        " 'runs through Keras' in err.getvalue())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.split(" ", 1)
    return {
        "python": sys.executable,
        "default_backend": out[0],
        "optional_packages_and_slow_warning": out[1].strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtimes", action="store_true", help="also the default model under Keras and ONNX")
    parser.add_argument(
        "--model", action="append", default=[], metavar="NAME=PATH", help="time another model too"
    )
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="embed-speed-") as tmp:
        data = Path(tmp) / "bbox_train"
        shutil.copytree(SOURCE, data)
        n_images = sum(1 for _ in data.rglob("*.jpg"))
        models = dict(MODELS)
        if args.runtimes:
            models.update(runtime_variants(Path(tmp)))
        models.update(
            {name: Path(path).resolve() for name, _, path in (m.partition("=") for m in args.model)}
        )
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.runs):
            for name, model in models.items():
                seconds = one_run(data, model, Path(tmp) / "indexes")
                times[name].append(seconds)
                print(f"{name:<28} {seconds:6.1f} s  {n_images / seconds:6.1f} images/s", flush=True)
    rows = []
    for name, secs in times.items():
        rows.append(
            {
                "model": name,
                "images": n_images,
                "runs": len(secs),
                "seconds": [round(s, 2) for s in secs],
                "images_per_s_best": round(n_images / min(secs), 1),
                "images_per_s_median": round(n_images / statistics.median(secs), 1),
            }
        )
    ours, peer = rows[0], rows[1]
    summary = {
        "benchmark": "whole-process reid-search index of a copy of cuhk03-mars bbox_train",
        "environment": environment(),
        "rows": rows,
        "ratio_median": round(ours["images_per_s_median"] / peer["images_per_s_median"], 2),
        "ratio_best": round(ours["images_per_s_best"] / peer["images_per_s_best"], 2),
    }
    print(
        f"default / OSNet-x0.25: {summary['ratio_median']}x (medians), {summary['ratio_best']}x (best runs)"
    )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
