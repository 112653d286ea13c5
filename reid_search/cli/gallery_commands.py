"""Commands that build and look after galleries: index (folders, video), galleries, reindex, clusters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    EngineOpt,
    IndexesOpt,
    ModelOpt,
    NamePatternOpt,
    QuietOpt,
    RayActorsOpt,
    RayAddressOpt,
    _fail,
    _given_options,
    _make_embedder,
    app,
    friendly_errors,
)


@app.command()
@friendly_errors
def index(
    ctx: typer.Context,
    data: Annotated[
        list[Path],
        typer.Argument(
            help="Dataset folder (MARS, Market-1501, Kaggle MARS, one folder per identity), any "
            "folder of unlabelled crops, or video files (.mp4, .avi, .mkv, ...; --layout frames: "
            "folders of frame images)."
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Gallery name [default: the folder's name].")
    ] = None,
    model: ModelOpt = None,
    level: Annotated[
        str, typer.Option(help="image: a vector per image; tracklet: a mean-pooled vector per tracklet.")
    ] = "image",
    layout: Annotated[
        str | None,
        typer.Option(
            help="mars, kaggle-mars, market1501, unlabelled, generic, or frames (folders of video "
            "frames) [default: detect; video files are always video]."
        ),
    ] = None,
    split: Annotated[
        list[str] | None, typer.Option(help="Split folder(s) to index [default: the test split].")
    ] = None,
    name_pattern: NamePatternOpt = None,
    metadata: Annotated[
        Path | None,
        typer.Option(help="CSV sidecar: a path column plus any (camera, time, site, ...); wins over names."),
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Delete the gallery and start over.")] = False,
    frames_per_tracklet: Annotated[
        int, typer.Option(min=1, help="Tracklet level: at most this many evenly spaced frames.")
    ] = 32,
    batch_size: Annotated[int, typer.Option(min=1, help="Images per batch.")] = 64,
    checkpoint_seconds: Annotated[
        float, typer.Option(help="Update the manifest's counts at least this often.")
    ] = 30.0,
    index_type: Annotated[
        str | None,
        typer.Option(help="FAISS factory string (Flat, HNSW32, IVF4096,PQ32, ...) or auto [default: auto]."),
    ] = None,
    vectors: Annotated[
        Path | None,
        typer.Option(help="Precomputed vectors (.npz from 'embed' of DATA) instead of embedding."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the build report as JSON.")] = False,
    attributes: Annotated[
        bool | None,
        typer.Option(
            "--attributes/--no-attributes",
            help="Give entries attribute probabilities for `find` [default: when the model has a head].",
        ),
    ] = None,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    ray_actors: RayActorsOpt = None,
    indexes_dir: IndexesOpt = None,
    quiet: QuietOpt = False,
    detector: Annotated[
        str | None,
        typer.Option(
            envvar="REID_SEARCH_DETECTOR",
            help="Video: a person detector, by name (`reid-search models`) or card file "
            "[default: person-detection-0202].",
        ),
    ] = None,
    detect_every: Annotated[int, typer.Option(min=1, help="Video: detect people every Nth frame.")] = 1,
    camera: Annotated[
        int | None, typer.Option(help="Video: the camera number [default: cam3/c3 in the file name].")
    ] = None,
    start_time: Annotated[
        str | None,
        typer.Option(help="Video: ISO 8601 time of the first frame [default: the video's creation time]."),
    ] = None,
    min_box_height: Annotated[
        int, typer.Option(min=1, help="Video: smallest person box kept, in pixels.")
    ] = 64,
    min_confidence: Annotated[
        float, typer.Option(min=0, max=1, help="Video: lowest detector confidence kept.")
    ] = 0.5,
    min_track_length: Annotated[int, typer.Option(min=1, help="Video: fewest crops a tracklet keeps.")] = 3,
    fps: Annotated[
        float, typer.Option(min=0.01, help="--layout frames: frames per second of the folders.")
    ] = 10.0,
) -> None:
    """Embed every image of DATA into a gallery (resumes; adds only new files).

    Video files (or, with --layout frames, folders of frames) are cut into person tracklets
    first: detect, track, crop; the crops are kept under the gallery (NAME/crops).
    """
    from ..embedding.vectors import read_vectors
    from ..gallery import build_gallery
    from ..video.decode import is_video

    video = layout == "frames" or any(is_video(d) for d in data)
    _refuse_options_that_do_not_apply(_given_options(ctx, ("COMMANDLINE",)), video)  # not env defaults
    if video:
        from ..video.detector_store import resolve_detector
        from ..video.ingest import VideoOptions

        card = resolve_detector(detector, download=True, log=(lambda line: None) if as_json else typer.echo)
        options = VideoOptions(
            str(card), detect_every, min_box_height, min_confidence, min_track_length, camera, start_time, fps
        )
        _index_video(data, name, model, batch_size, options, layout == "frames", level, frames_per_tracklet,
                     rebuild, index_type, indexes_dir, quiet, as_json, attributes)  # fmt: skip
        return
    if len(data) != 1:
        _fail("give one dataset folder (several paths are for video files)")
    data = data[0]
    precomputed = read_vectors(vectors) if vectors else None
    embedder = None
    if not precomputed:
        embedder = _make_embedder(engine, model, batch_size, address=ray_address, actors=ray_actors)
    gallery, report = build_gallery(
        data,
        name,
        embedder,
        level=level,
        layout=layout,
        splits=split,
        name_pattern=name_pattern,
        metadata=metadata,
        rebuild=rebuild,
        indexes_dir=indexes_dir,
        frames_per_tracklet=frames_per_tracklet,
        checkpoint_seconds=checkpoint_seconds,
        progress=not quiet,
        index_type=index_type,
        vectors=precomputed,
        attributes=attributes,
    )
    counts = gallery.manifest["counts"]
    if as_json:
        typer.echo(
            json.dumps({**report.to_dict(), "counts": counts, "index": gallery.manifest["index"]}, indent=2)
        )
        gallery.close()
        return
    typer.echo(
        f"gallery {gallery.path}: {counts['vectors']} vectors ({level} level), "
        f"{counts['persons']} persons, {counts['cameras']} cameras"
    )
    typer.echo(
        f"this run: {report.added} added, {report.already_present} already present, "
        f"{report.replaced} replaced, {len(report.skipped)} skipped, "
        f"{report.images_embedded} images in {report.seconds:.1f} s ({report.images_per_second:.0f} images/s)"
    )
    typer.echo(f"index {gallery.manifest['index'].get('factory')} written in {report.index_seconds:.1f} s")
    if report.metadata_updated:
        typer.echo(f"metadata updated on {report.metadata_updated} entries already present")
    if report.metadata_unmatched:
        more = (
            f" (and {len(report.metadata_unmatched) - 3} more)" if len(report.metadata_unmatched) > 3 else ""
        )
        typer.echo(
            f"warning: {len(report.metadata_unmatched)} --metadata rows name no image here: "
            + ", ".join(report.metadata_unmatched[:3])
            + more,
            err=True,
        )
    for s in report.skipped[:10]:
        typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    if len(report.skipped) > 10:
        typer.echo(
            f"... and {len(report.skipped) - 10} more (table 'skipped' in {gallery.path / 'meta.sqlite'})",
            err=True,
        )
    gallery.close()


FOLDER_ONLY = ("split", "name_pattern", "metadata", "vectors", "engine", "ray_address", "ray_actors",
               "checkpoint_seconds")  # fmt: skip
VIDEO_ONLY = ("detector", "detect_every", "camera", "start_time", "min_box_height", "min_confidence",
              "min_track_length", "fps")  # fmt: skip


def _refuse_options_that_do_not_apply(given: set[str], video: bool) -> None:
    """One error naming the options given that the kind of input (videos vs folders) ignores."""
    wrong = [o for o in (FOLDER_ONLY if video else VIDEO_ONLY) if o in given]
    if wrong:
        names = ", ".join("--" + o.replace("_", "-") for o in wrong)
        kind = "videos (and --layout frames)" if video else "folders of images"
        _fail(f"{names}: not used when indexing {kind}; leave it out")


def _index_video(videos, name, model, batch_size, options, frame_folders, level, frames_per_tracklet,
                 rebuild, index_type, indexes_dir, quiet, as_json, attributes=None) -> None:  # fmt: skip
    """``index`` for video files or frame folders: cut tracklets, then index their crops."""
    from ..embedding.embedder import Embedder
    from ..gallery.from_video import build_video_gallery
    from ..gallery.store import gallery_name_from_folder

    gallery, report, cuts = build_video_gallery(
        videos, name or gallery_name_from_folder(Path(videos[0]).stem),
        Embedder(model, batch_size=batch_size), options, level=level, indexes_dir=indexes_dir,
        frames_per_tracklet=frames_per_tracklet, progress=not quiet, index_type=index_type,
        rebuild=rebuild, frame_folders=frame_folders, attributes=attributes,
        log=(lambda line: None) if as_json else typer.echo,
    )  # fmt: skip
    counts = gallery.manifest["counts"]
    if as_json:
        payload = {**report.to_dict(), "counts": counts, "videos": [_cut_dict(c) for c in cuts]}
        typer.echo(json.dumps(payload, indent=2))
    else:
        typer.echo(
            f"gallery {gallery.path}: {counts['vectors']} vectors ({level} level) from "
            f"{sum(c.tracklets for c in cuts)} tracklets of {len(cuts)} video(s)"
        )
        for s in report.skipped[:10]:
            typer.echo(f"skipped {s.path}: {s.reason}", err=True)
    gallery.close()


def _cut_dict(cut) -> dict:
    keep = ("video", "frames", "frames_detected", "detections", "tracklets", "dropped_tracklets", "stopped")
    return {
        **{k: getattr(cut, k) for k in keep},
        "crops": len(cut.records),
        "seconds": round(cut.seconds, 2),
        "video_seconds": round(cut.video_seconds, 2),
    }


@app.command()
@friendly_errors
def galleries(
    indexes_dir: IndexesOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the manifests as a JSON list.")] = False,
) -> None:
    """List the galleries in the indexes folder with their size, index type and model."""
    from ..gallery import MANIFEST_FILE, default_indexes_dir, list_galleries, read_manifest

    found = [(path, read_manifest(path / MANIFEST_FILE)) for path in list_galleries(indexes_dir)]
    if as_json:
        typer.echo(json.dumps([{"path": str(p), **m} for p, m in found], indent=2))
        return
    if not found:
        typer.echo(f"no gallery in {indexes_dir or default_indexes_dir()}")
    for path, m in found:
        c = m.get("counts", {})
        index = m.get("index", {}).get("factory") or m.get("index_type", "?")
        typer.echo(
            f"{path.name:<20} {c.get('vectors', 0):>8} vectors  {m['level']:<8} index {index:<10} "
            f"model {m['model']['name']} ({m['model']['sha256'][:12]})  updated {m['updated']}"
        )


@app.command()
@friendly_errors
def reindex(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    index_type: Annotated[
        str,
        typer.Option(help="FAISS factory string (Flat, HNSW32, IVF1024,Flat, IVF4096,PQ32, ...) or auto."),
    ] = "auto",
    nprobe: Annotated[int | None, typer.Option(min=1, help="IVF lists searched per query.")] = None,
    ef_search: Annotated[int | None, typer.Option(min=1, help="HNSW search depth.")] = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Rebuild a gallery's FAISS index from its stored vectors (no embedding)."""
    import time

    from ..gallery import Gallery

    params = {k: v for k, v in {"nprobe": nprobe, "efSearch": ef_search}.items() if v is not None}
    started = time.perf_counter()
    with Gallery.open(name, indexes_dir) as gallery, gallery.writing():
        state = gallery.reindex(index_type, params)
    typer.echo(
        f"{gallery.path}: index {state.factory} over {state.count} vectors "
        f"({time.perf_counter() - started:.1f} s; params {state.params})"
    )


@app.command()
@friendly_errors
def cluster(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    threshold: Annotated[
        float | None,
        typer.Option(help="Link entries at or above this cosine [default: the model card's threshold]."),
    ] = None,
    k: Annotated[
        int, typer.Option("--k", min=1, help="Neighbours per entry; links must be k-reciprocal.")
    ] = 10,
    rebuild: Annotated[bool, typer.Option(help="Cluster every entry again, not only new ones.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Group a gallery's entries into people (k-reciprocal neighbours above the threshold).

    Incremental: new entries join existing clusters or start new ones. Unlabelled queries
    then answer with clusters: "this person, seen on cameras 1, 3, 6, in 14 images".
    """
    from ..gallery import Gallery
    from ..gallery.clusters import cluster_gallery

    with Gallery.open(name, indexes_dir) as gallery, gallery.writing():
        report = cluster_gallery(gallery, threshold, k, rebuild)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    how = "all entries" if report.reclustered else "new entries"
    typer.echo(
        f"{gallery.path}: {report.clustered} {how} clustered at threshold {report.threshold:.4f} "
        f"(k {report.k}) in {report.seconds:.1f} s: {report.clusters} clusters, {report.merged} merged"
    )


@app.command()
@friendly_errors
def clusters(
    name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    min_size: Annotated[int, typer.Option(min=1, help="Only clusters with at least this many entries.")] = 1,
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many (biggest first; 0 = all).")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """List a gallery's clusters: size, cameras, time span, biggest first."""
    from ..gallery import Gallery
    from ..gallery.clusters import list_clusters

    with Gallery.open(name, indexes_dir) as gallery:
        found = list_clusters(gallery, min_size)
        unclustered = gallery.unclustered_count()
    shown = found[:limit] if limit else found
    if as_json:
        typer.echo(json.dumps({"clusters": [c.to_dict() for c in shown], "total": len(found)}, indent=2))
        return
    if not found:
        typer.echo(f"no clusters (run 'reid-search cluster {name}' first)")
        return
    typer.echo(f"{'cluster':>7}  {'size':>5}  cameras      time span")
    for c in shown:
        cams = ",".join(map(str, c.cameras)) or "-"
        span = f"{c.first_time} .. {c.last_time}" if c.first_time else "-"
        typer.echo(f"{c.cluster:>7}  {c.size:>5}  {cams:<12} {span}")
    typer.echo(f"{len(found)} clusters; {unclustered} entries not clustered yet")
