"""``reid-search trace``: the query person's visits across cameras, in time order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ._common import IndexesOpt, ModelOpt, _fail, app, friendly_errors


@app.command()
@friendly_errors
def trace(
    images: Annotated[
        list[Path] | None, typer.Argument(help="Query image(s) of one person (several: one tracklet).")
    ] = None,
    index_name: Annotated[
        str, typer.Option("--index", "-i", help="The gallery to trace the person in.")
    ] = "",
    identity: Annotated[
        int | None,
        typer.Option(help="Trace a stored identity (`reid-search identities`) instead of query images."),
    ] = None,
    model: ModelOpt = None,
    overlapping_cameras: Annotated[
        list[str] | None,
        typer.Option(
            help="Two cameras that see one place, e.g. 1,2 (repeatable): a person may be in both at once."
        ),
    ] = None,
    gap_seconds: Annotated[
        float, typer.Option(min=0, help="Single crops of one camera this close in time are one visit.")
    ] = 10.0,
    min_score: Annotated[
        float | None,
        typer.Option(help="Accept sightings by this cosine instead of the card's open-set rule."),
    ] = None,
    by: Annotated[
        str,
        typer.Option(
            help="query: the sightings the query itself accepts; identity: the stored identity "
            "(`reid-search identities`) of its best match; auto: identity when the gallery's "
            "identities are current, else query."
        ),
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="The journey as JSON (docs/querying.md).")] = False,
    bundle: Annotated[
        Path | None,
        typer.Option(help="Also write an evidence bundle (.zip: crops, frames, manifest of hashes, report)."),
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option(help="Also draw the journey: cameras as rows, time across, a crop per visit."),
    ] = None,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Where did this person go? Their visits across the gallery's cameras in time order, the
    camera changes with travel times, and the look-alike visits the constraints set aside."""
    from ..gallery import Gallery
    from ..journeys import trace as run_trace
    from ..journeys.trace import camera_pair, trace_identity
    from ..search.service import embedder_for_gallery

    pairs = [camera_pair(t) for t in overlapping_cameras or []]
    if bundle is not None and bundle.exists():
        _fail(f"{bundle}: already exists; a bundle is never overwritten (choose another path)")
    if plot is not None:
        from ..figures import check_figure_path

        check_figure_path(plot)  # a type matplotlib cannot write: refused before any work
    if bool(images) == (identity is not None):
        _fail("give query image(s) or --identity N, not both and not neither")
    if not index_name:
        _fail("--index NAME: the gallery to trace the person in")
    with Gallery.open(index_name, indexes_dir) as gallery:
        if identity is not None:
            journey = trace_identity(gallery, identity, gap_seconds)
        else:
            embedder = embedder_for_gallery(gallery, model)
            journey = run_trace(gallery, embedder, images, pairs, gap_seconds, min_score, by=by)
    if plot is not None and journey.visits:
        from ..journeys.timeline import plot_journey

        plot_journey(journey, plot)
    if bundle is not None:
        from ..journeys.bundle import write_bundle

        write_bundle(journey, bundle)
        typer.echo(f"evidence bundle: {bundle} (reid-search verify-bundle {bundle})", err=as_json)
    if as_json:
        typer.echo(json.dumps(journey.to_dict(), indent=2))
        return
    if not journey.visits:
        typer.echo(f"no visit: nobody in gallery {journey.gallery} is accepted as this person")
        return
    how = answered_by(journey.settings)
    typer.echo(f"{len(journey.visits)} visit(s) in gallery {journey.gallery}, {how}:")
    for n, visit in enumerate(journey.visits, start=1):
        d = visit.to_dict()
        where = (
            f" {Path(d['video']).name} frames {d['frames'][0]}-{d['frames'][1]}"
            if d["video"] and d["frames"]
            else ""
        )
        span = f"{d['first']} .. {d['last']}"
        typer.echo(f"  {n}. camera {visit.camera}  {span}  confidence {visit.confidence:.2f}"
                   f"  {len(visit.entries)} crop(s){where}  best {visit.best.path}")  # fmt: skip
    for t in journey.transitions:
        typer.echo(f"  camera {t['from_camera']} -> {t['to_camera']}: {t['travel_seconds']:.0f} s")
    for visit, why in journey.set_aside:
        typer.echo(f"  set aside: camera {visit.camera} {visit.first.isoformat()} ({why})")
    if plot is not None:
        typer.echo(f"journey drawn: {plot}")


def answered_by(settings: dict) -> str:
    """How a journey was made, for its header line.

    >>> answered_by({"by": "identity", "identity": 7, "matched": "a.jpg"})
    'by identity 7 (the query matched a.jpg; --by query to trace by the image alone)'
    >>> answered_by({"identity": 7}), answered_by({"by": "query"})
    ('identity 7', 'by the query')
    """
    if "matched" in settings:
        return (f"by identity {settings['identity']} (the query matched {settings['matched']}; "
                "--by query to trace by the image alone)")  # fmt: skip
    return f"identity {settings['identity']}" if "identity" in settings else "by the query"


@app.command("verify-bundle")
@friendly_errors
def verify_bundle_command(
    bundle: Annotated[Path, typer.Argument(help="An evidence bundle written by trace --bundle.")],
) -> None:
    """Re-check every hash in an evidence bundle (and its sources where they still are); say
    what changed. Exit 0 when nothing did, 1 when something did."""
    from ..journeys.bundle import verify_bundle

    check = verify_bundle(bundle)
    for problem in check.problems:
        typer.echo(f"changed: {problem}")
    for source in check.sources_gone:
        typer.echo(f"not checked: source {source} is no longer there")
    verdict = "unchanged" if not check.problems else f"{len(check.problems)} change(s)"
    typer.echo(f"{bundle}: {check.files} files, {check.sources_checked} sources checked: {verdict}")
    if check.problems:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def identities(
    index_name: Annotated[str, typer.Argument(help="The gallery whose sightings to link into people.")],
    threshold: Annotated[
        float | None, typer.Option(help="Average cosine two groups need to merge [default: the card's].")
    ] = None,
    overlapping_cameras: Annotated[
        list[str] | None, typer.Option(help="Two cameras that see one place, e.g. 1,2 (repeatable).")
    ] = None,
    rebuild: Annotated[
        bool,
        typer.Option(help="Link everything again (default: keep the stored identities, link new sightings)."),
    ] = False,
    show_summary: Annotated[
        bool, typer.Option("--summary", help="Only count the stored identities per camera and hour.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="The report (or summary) as JSON.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Link a whole gallery's tracklets and crops into global identities across cameras (stored
    in the gallery; run again, it links only what was indexed since, unless --rebuild), or
    --summary: people per camera and hour."""
    from ..gallery import Gallery
    from ..journeys.identities import link_identities, summary
    from ..journeys.trace import camera_pair

    if show_summary:
        with Gallery.open(index_name, indexes_dir) as gallery:
            counts = summary(gallery)
        if as_json:
            typer.echo(json.dumps(counts, indent=2))
            return
        typer.echo(f"{counts['identities']} identities in gallery {index_name}")
        for camera, n in counts["per_camera"].items():
            typer.echo(f"  camera {camera}: {n}")
        for hour, n in counts["per_hour"].items():
            typer.echo(f"  {hour}:00  {n}")
        return
    pairs = [camera_pair(t) for t in overlapping_cameras or []]
    with Gallery.open(index_name, indexes_dir) as gallery, gallery.writing():
        report = link_identities(gallery, threshold, overlapping=pairs, rebuild=rebuild)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
        return
    typer.echo(
        f"{report.identities} identities from {report.units} sightings ({report.linked} linked now; "
        f"threshold {report.threshold:.4f}, "
        f"{report.threshold_source}; "
        f"{report.constraint_refusals} merges refused by the constraints) in {report.seconds:.1f} s"
    )
