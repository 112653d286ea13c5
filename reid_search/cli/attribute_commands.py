"""Commands of search by description: find, attributes, train-attributes."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Annotated

import typer

from ..attributes.train import AttributeTrainConfig
from ._common import IndexesOpt, ModelOpt, app, fits_line, friendly_errors

_DEFAULT = {f.name: f.default for f in fields(AttributeTrainConfig)}  # one home for the defaults


@app.command()
@friendly_errors
def find(
    description: Annotated[
        str, typer.Argument(help="What the person looks like: 'woman, red top, black trousers, backpack'.")
    ],
    index_name: Annotated[
        str | None, typer.Option("--index", "-i", help="Gallery name or folder [default: the only one].")
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Answers to return.")] = 10,
    matches: Annotated[int, typer.Option(help="Best-fitting entries shown per answer.")] = 3,
    camera: Annotated[
        list[int] | None, typer.Option(help="Only entries of this camera (repeatable).")
    ] = None,
    exclude_camera: Annotated[
        list[int] | None, typer.Option(help="Ignore entries of this camera (repeatable).")
    ] = None,
    after: Annotated[str | None, typer.Option(help="Only entries seen at or after this time.")] = None,
    before: Annotated[str | None, typer.Option(help="Only entries seen at or before this time.")] = None,
    by: Annotated[
        str,
        typer.Option(
            help="Answer per auto (person, cluster, tracklet or entry, as query), entry, or identity "
            "(after `reid-search identities`)."
        ),
    ] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (query --json's shape).")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Find people by description, with no query image.

    Words: man/woman, young/middle-aged/elderly, a colour before a garment (red top, blue
    jeans, black trousers), short/long sleeves, shorts, skirt, backpack, messenger bag, plastic
    bag, bag, hat, long/short hair; 'no' or 'without' negates (no bag).
    """
    from ..gallery import EntryFilter, Gallery
    from ..search.find import FindOptions, find_by_description

    options = FindOptions(
        top_k, matches, EntryFilter.parse(camera or (), exclude_camera or (), after, before), by
    )
    with Gallery.open(index_name, indexes_dir) as gallery:
        result = find_by_description(gallery, description, options)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    terms = "; ".join(f"{t['words']} = {t['means']}" for t in result.description["terms"])
    typer.echo(f"find: {terms} in gallery {result.gallery}")
    if result.filter:
        typer.echo("filter: " + ", ".join(f"{k} {v}" for k, v in result.filter.items()))
    for hit in result.identities:
        who = hit.key.replace(":", " ", 1).removeprefix("person ")
        fits = fits_line(hit.attributes or [])
        best = hit.matches[0]
        where_seen = "c-" if best.camera is None else f"c{best.camera}"
        typer.echo(f"{hit.rank:>4}  {who:<14} {100 * hit.score:3.0f}%  ({fits})  {where_seen}  {best.path}")
    if not result.identities:
        typer.echo("no gallery entry passes the filter" if result.filter else "the gallery is empty")


@app.command()
@friendly_errors
def attributes(
    index_name: Annotated[str, typer.Argument(help="Gallery name or folder.")],
    head: Annotated[
        Path | None,
        typer.Option(help="An attribute head (.attributes.npz) [default: the one for the gallery's model]."),
    ] = None,
    rebuild: Annotated[bool, typer.Option(help="Predict every entry again, not only new ones.")] = False,
    indexes_dir: IndexesOpt = None,
) -> None:
    """Give a gallery's entries attribute probabilities, from their stored vectors (no image read).

    New entries get them at index time when the model has an attribute head; run this for a
    gallery made before, or after `train-attributes`.
    """
    from ..attributes.head import AttributeHead, AttributeHeadError, head_for_model
    from ..gallery import Gallery

    with Gallery.open(index_name, indexes_dir) as gallery, gallery.writing():
        chosen = AttributeHead.load(head) if head else head_for_model(gallery.model_sha256)
        if chosen.model_sha256 != gallery.model_sha256:
            raise AttributeHeadError(
                f"{head}: reads the embeddings of model sha256 {chosen.model_sha256[:12]}, "
                f"not the gallery's ({gallery.model_sha256[:12]})"
            )
        written = gallery.fill_attributes(chosen, rebuild)
        typer.echo(
            f"gallery {gallery.name}: {written} entries given {len(chosen.names)} attributes "
            f"(head {chosen.card.get('name')}, held-out mA {chosen.card['metrics']['mA']:.1%}); "
            f"{gallery.size - written} already had them"
        )


@app.command("train-attributes")
@friendly_errors
def train_attributes(
    data: Annotated[
        list[Path], typer.Argument(help="Folder(s) with attributes.csv (path,person,attributes).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="The head file [default: $REID_SEARCH_HOME/attributes/MODEL.attributes.npz]."),
    ] = None,
    model: ModelOpt = None,
    test_fraction: Annotated[float, typer.Option(help="People held out for the card's scores.")] = _DEFAULT[
        "test_fraction"
    ],
    seed: Annotated[int, typer.Option(help="Seed of the people split and the training.")] = _DEFAULT["seed"],
    epochs: Annotated[int, typer.Option(help="Epochs of the linear layer.")] = _DEFAULT["epochs"],
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = _DEFAULT["lr"],
    l2: Annotated[float, typer.Option(help="L2 weight penalty.")] = _DEFAULT["l2"],
    calibration_folds: Annotated[int, typer.Option(help="Folds of the out-of-fold calibration.")] = _DEFAULT[
        "calibration_folds"
    ],
) -> None:
    """Train an attribute head over a model's embeddings (people-disjoint split, calibrated)."""
    from ..attributes.head import home_folder
    from ..attributes.train import train_attribute_head
    from ..embedding.model_store import resolve_model_path

    model_path = resolve_model_path(model)
    target = out or home_folder() / f"{model_path.stem}.attributes.npz"
    config = AttributeTrainConfig(
        [str(d) for d in data], str(target), str(model) if model else "", test_fraction, seed, epochs, lr, l2,
        calibration_folds=calibration_folds,
    )  # fmt: skip
    head = train_attribute_head(config, log=typer.echo)
    metrics = head.card["metrics"]
    typer.echo(
        f"wrote {head.path}: mA {metrics['mA']:.1%}, instance F1 {metrics['instance']['f1']:.3f}, "
        f"calibration error {metrics['calibration_error']:.3f} on {metrics['images']} held-out images"
    )
