"""``trace``: a person's visits across cameras in time order, and the constraints that set
look-alikes aside (one person is in one place at a time; one crop of a frame is the person)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.journeys import Seen, Visit, resolve
from reid_search.journeys.visits import group_visits, transitions

from .conftest import index_with_cli

runner = CliRunner()
T0 = datetime(2026, 11, 25, 10, 0, 0)


def seen(camera: int, second: float, sim: float = 0.8, tracklet: int | None = None, frame=None, video=None):
    moment = T0 + timedelta(seconds=second)
    extra = {"video": video} if video else {}
    return Seen(0, f"c{camera}-{second}.jpg", camera, tracklet, frame, moment, sim, sim, extra)


def test_visits_group_a_tracklet_and_close_single_crops_of_one_camera():
    crops = [seen(1, 0, tracklet=4), seen(1, 1, tracklet=4), seen(2, 100), seen(2, 105), seen(2, 300)]
    visits = sorted(group_visits(crops, gap_seconds=10), key=lambda v: v.first)
    assert [(v.camera, len(v.entries)) for v in visits] == [(1, 2), (2, 2), (2, 1)]


def test_one_person_is_not_in_two_places_at_once_unless_the_cameras_overlap():
    sure = Visit(1, [seen(1, 0), seen(1, 30)])
    look_alike = Visit(2, [seen(2, 20, sim=0.6)])  # during the visit on camera 1
    later = Visit(2, [seen(2, 90, sim=0.7)])
    kept, set_aside = resolve([look_alike, later, sure], overlapping=set())
    assert [(v.camera, v.first) for v in kept] == [(1, sure.first), (2, later.first)]
    assert set_aside == [(look_alike, "at the same time as a more confident visit on camera 1")]
    kept, set_aside = resolve([look_alike, later, sure], overlapping={frozenset((1, 2))})
    assert len(kept) == 3 and set_aside == []
    left, arrived = (T0 + timedelta(seconds=s) for s in (30, 20))
    assert transitions(kept)[0] == {"from_camera": 1, "to_camera": 2, "left": left.isoformat(),
                                    "arrived": arrived.isoformat(), "travel_seconds": -10.0}  # fmt: skip


def test_two_crops_of_one_frame_are_not_both_the_person():
    a = Visit(3, [seen(3, 5, sim=0.9, tracklet=1, frame=50, video="v.mp4")])
    b = Visit(3, [seen(3, 5, sim=0.7, tracklet=2, frame=50, video="v.mp4")])
    kept, set_aside = resolve([b, a], overlapping=set())
    assert kept == [a] and set_aside[0][1].startswith("a crop of the same frame")


def write_world_csv(data: Path, out: Path) -> Path:
    """The world's CSV for the synthetic people below ``data``: person i walks camera 1 -> 2 -> 3,
    ten minutes apart, people a minute apart; each camera visit its own tracklet."""
    rows = []
    for path in sorted(data.rglob("*.jpg")):
        person, camera, frame = int(path.name[:4]), int(path.name[5]), int(path.name[12:15])
        moment = T0 + timedelta(seconds=60 * person + 600 * (camera - 1) + frame)
        rows.append((str(path.relative_to(data)), camera, moment.isoformat(), 100 * person + camera))
    with open(out, "w", newline="") as handle:  # + the tracker's tracklet of each crop
        csv.writer(handle).writerows([("path", "camera", "time", "tracklet"), *rows])
    return out


@pytest.fixture(scope="module")
def world(synth_root, tmp_path_factory) -> tuple[Path, Path]:
    """A world from the synthetic people, indexed unlabelled with camera, time and tracklet
    from a CSV. Returns (the crops' folder, the indexes folder holding gallery "world")."""
    data, folder = synth_root / "bbox_test", tmp_path_factory.mktemp("world")
    times = str(write_world_csv(data, folder / "times.csv"))
    index_with_cli(data, folder / "indexes", "world", "--layout", "unlabelled", "--metadata", times)
    return data, folder / "indexes"


def test_trace_follows_a_person_through_three_cameras_in_time_order(world):
    data, indexes = world
    query = next(data.rglob("0004C1T0001F002.jpg"))
    args = ["trace", str(query), "--index", "world", "--indexes-dir", str(indexes)]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    journey = json.loads(result.stdout)
    assert journey["schema"] == "reid-search/trace/v1"
    assert journey["settings"]["by"] == "query"  # no identities yet: the query decides
    visits = journey["visits"]
    assert [v["camera"] for v in visits] == [1, 2, 3]
    assert all(e["path"].split("/")[-1].startswith("0004") for v in visits for e in v["entries"])
    assert [v["tracklets"] for v in visits] == [[401], [402], [403]]  # the CSV's tracklets, one visit each
    assert [t["travel_seconds"] for t in journey["transitions"]] == [598.0, 598.0]  # frame 3 -> frame 1
    plot = indexes.parent / "journey.png"
    text = runner.invoke(app, [*args, "--plot", str(plot)])
    assert text.exit_code == 0 and "3 visit(s)" in text.stdout and "camera 1 -> 2: 598 s" in text.stdout
    from PIL import Image

    with Image.open(plot) as drawn:  # a picture as wide as the journey: three visits across
        assert drawn.format == "PNG" and drawn.width > drawn.height
    refused = runner.invoke(app, [*args, "--plot", str(indexes.parent / "journey.txt")])
    assert refused.exit_code == 2 and "a figure is written as" in refused.stderr


def test_trace_needs_times_and_known_cameras(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    index_with_cli(synth_root / "bbox_test", indexes, "plain")
    query = next((synth_root / "bbox_test").rglob("0004C1T0001F002.jpg"))
    args = ["trace", str(query), "--index", "plain", "--indexes-dir", str(indexes)]
    result = runner.invoke(app, args)
    assert (
        result.exit_code == 2 and "has no camera or time" in result.stderr and "--metadata" in result.stderr
    )
    result = runner.invoke(app, [*args, "--overlapping-cameras", "1,9"])
    assert result.exit_code == 2 and "camera 9, which gallery plain does not have" in result.stderr


def test_the_api_traces_an_upload_like_the_command(world):
    """POST /api/trace answers the same journey as `reid-search trace` for the same image."""
    from fastapi.testclient import TestClient

    from reid_search.serve import ServeConfig, create_app

    data, indexes = world
    query = next(data.rglob("0007C2T0001F001.jpg"))
    cli = runner.invoke(
        app, ["trace", str(query), "--index", "world", "--indexes-dir", str(indexes), "--json"]
    )
    client = TestClient(create_app(ServeConfig(indexes_dir=indexes)))
    upload = [("images", (query.name, query.read_bytes(), "image/jpeg"))]
    answer = client.post("/api/trace", files=upload)
    assert answer.status_code == 200, answer.text
    api, command = answer.json(), json.loads(cli.stdout)
    assert [v["camera"] for v in api["visits"]] == [v["camera"] for v in command["visits"]] == [1, 2, 3]
    assert [v["first"] for v in api["visits"]] == [v["first"] for v in command["visits"]]
    bad = client.post("/api/trace", files=upload, data={"overlapping_cameras": "1;2"})
    assert bad.status_code == 400 and "overlapping_cameras" in bad.json()["detail"]


def test_a_query_nobody_matches_is_an_empty_journey_said_plainly(world, mars_samples):
    """A real street crop against the synthetic world: nobody there is this person."""
    _, indexes = world
    query = sorted(mars_samples.glob("*.jpg"))[0]
    args = ["trace", str(query), "--index", "world", "--indexes-dir", str(indexes), "--min-score", "0.99"]
    said = runner.invoke(app, args)
    assert said.exit_code == 0
    assert said.stdout.strip() == "no visit: nobody in gallery world is accepted as this person"
    answer = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert answer["visits"] == answer["transitions"] == [] and answer["settings"]["min_score"] == 0.99


def _rewrite_member(bundle, name: str, change) -> None:
    """Rewrite one member of a zip with ``change(bytes) -> bytes`` (the rest as it was)."""
    import zipfile

    members = {}
    with zipfile.ZipFile(bundle) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members[name] = change(members[name])
    with zipfile.ZipFile(bundle, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)


def test_an_evidence_bundle_verifies_and_any_changed_byte_is_reported(world, tmp_path):
    import shutil
    import zipfile

    data, indexes = world
    query = tmp_path / "query.jpg"
    shutil.copyfile(next(data.rglob("0004C1T0001F002.jpg")), query)
    bundle = tmp_path / "case.zip"
    args = ["trace", str(query), "--index", "world", "--indexes-dir", str(indexes), "--bundle", str(bundle)]
    assert runner.invoke(app, args).exit_code == 0
    with zipfile.ZipFile(bundle) as z:
        names = set(z.namelist())
        manifest = json.loads(z.read("manifest.json"))
        report = z.read("report.html").decode()
    crops = sorted(n for n in names if "/crop-" in n)
    assert {"manifest.json", "manifest.sha256", "journey.json", "report.html", "query/01-query.jpg"} <= names
    assert len(crops) == 9 and set(manifest["files"]) == names - {"manifest.json", "manifest.sha256"}
    assert report.count("data:image/jpeg;base64,") == 3  # self-contained: the three visits' crops inline
    ok = runner.invoke(app, ["verify-bundle", str(bundle)])
    assert ok.exit_code == 0 and "unchanged" in ok.stdout

    _rewrite_member(bundle, crops[4], lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:])  # one byte
    changed = runner.invoke(app, ["verify-bundle", str(bundle)])
    assert changed.exit_code == 1 and f"changed: {crops[4]}: changed" in changed.stdout
    _rewrite_member(
        bundle, "manifest.json", lambda b: b.replace(b'"gallery": "world"', b'"gallery": "worle"')
    )
    assert "manifest.json: changed" in runner.invoke(app, ["verify-bundle", str(bundle)]).stdout
    query.write_bytes(query.read_bytes() + b"0")  # the source changed since
    assert f"source {query}: changed" in runner.invoke(app, ["verify-bundle", str(bundle)]).stdout
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "already exists" in again.stderr


def test_identities_link_each_persons_cameras_and_count_them_per_camera(world):
    """The synthetic world's 12 people, each seen once on each of 3 cameras: linked into one
    identity a person, stored in the gallery; --summary counts them per camera and hour."""
    import sqlite3

    from reid_search.gallery import Gallery

    data, indexes = world
    base = ["--indexes-dir", str(indexes)]
    done = runner.invoke(app, ["identities", "world", *base, "--threshold", "0.65", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["units"] == 36 and report["identities"] == 12
    with Gallery.open(indexes / "world") as gallery:
        rows = gallery.rows()
    with sqlite3.connect(indexes / "world" / "meta.sqlite") as con:
        identity_of = dict(con.execute("select faiss_id, identity from identities"))
        runs = con.execute("select model_sha256, settings from identity_runs").fetchall()
    people = {}
    for faiss_id, row in rows.items():
        people.setdefault(identity_of[faiss_id], set()).add(Path(row["path"]).name[:4])
    assert all(len(p) == 1 for p in people.values())  # no identity holds two people
    assert len(runs) == 1 and json.loads(runs[0][1])["constraints"] is True
    counts = json.loads(runner.invoke(app, ["identities", "world", *base, "--summary", "--json"]).stdout)
    assert counts["identities"] == 12 and counts["per_camera"] == {"1": 12, "2": 12, "3": 12}
    assert sum(counts["per_hour"].values()) >= 12
    assert report["threshold_source"] == "--threshold"
    default = json.loads(runner.invoke(app, ["identities", "world", *base, "--rebuild", "--json"]).stdout)
    assert (
        default["threshold_source"].startswith("model card")
        and "too few to fit" in default["threshold_source"]
    )


def test_query_and_trace_answer_by_identity(world):
    """After `identities`, a query's answers are identities (each a person across cameras, not
    one crop) and a stored identity's journey is traced with no query image."""
    data, indexes = world
    base = ["--indexes-dir", str(indexes)]
    assert (
        runner.invoke(app, ["identities", "world", *base, "--threshold", "0.65", "--rebuild"]).exit_code == 0
    )
    query = next(data.rglob("0004C1T0001F002.jpg"))
    out = runner.invoke(app, ["query", str(query), "--index", "world", *base, "--by", "identity", "--json",
                              "--matches", "9"])  # fmt: skip
    assert out.exit_code == 0, out.output
    top = json.loads(out.stdout)["results"][0]
    assert top["key"].startswith("identity:")
    assert {Path(m["path"]).name[:4] for m in top["matches"]} == {"0004"}
    assert {m["camera"] for m in top["matches"]} == {1, 2, 3}  # one answer holds all three cameras
    number = top["key"].split(":")[1]
    journey = runner.invoke(app, ["trace", "--identity", number, "--index", "world", *base, "--json"])
    assert journey.exit_code == 0, journey.output
    visits = json.loads(journey.stdout)["visits"]
    assert [v["camera"] for v in visits] == [1, 2, 3]
    for by in (["--by", "identity"], []):  # asked, and by default once the identities are current
        by_identity = runner.invoke(app, ["trace", str(query), *by, "--index", "world", *base, "--json"])
        assert by_identity.exit_code == 0, by_identity.output
        traced = json.loads(by_identity.stdout)
        assert traced["settings"]["by"] == "identity" and traced["settings"]["identity"] == int(number)
        assert [v["camera"] for v in traced["visits"]] == [1, 2, 3]
        assert {Path(e["path"]).name[:4] for v in traced["visits"] for e in v["entries"]} == {"0004"}
        best = max((e for v in traced["visits"] for e in v["entries"]), key=lambda e: e["similarity"])
        assert Path(best["path"]).name == query.name  # similarities are to the query, not the identity
    by_query = runner.invoke(app, ["trace", str(query), "--by", "query", "--index", "world", *base, "--json"])
    assert json.loads(by_query.stdout)["settings"]["by"] == "query"
    # the table says how it answered
    table = runner.invoke(app, ["trace", str(query), "--index", "world", *base]).stdout.splitlines()[0]
    assert f"by identity {number} (the query matched" in table and "--by query" in table
    table = runner.invoke(app, ["trace", str(query), "--by", "query", "--index", "world", *base]).stdout
    assert table.splitlines()[0].endswith("by the query:")
    unknown = runner.invoke(app, ["trace", "--identity", "999", "--index", "world", *base])
    assert unknown.exit_code == 2 and "has no identity 999" in unknown.output
    both = runner.invoke(app, ["trace", str(query), "--identity", number, "--index", "world", *base])
    assert both.exit_code == 2 and "not both" in both.output


def test_identities_summary_and_trace_by_identity_before_any_run_say_how_to_make_them(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    index_with_cli(synth_root / "bbox_test", indexes, "fresh")
    said = runner.invoke(app, ["identities", "fresh", "--indexes-dir", str(indexes), "--summary"])
    assert said.exit_code == 2 and "no identities yet: run reid-search identities fresh" in said.stderr
    query = str(next((synth_root / "bbox_test").rglob("*.jpg")))
    traced = runner.invoke(app, ["trace", query, "--by", "identity", "--index", "fresh", "--indexes-dir",
                                 str(indexes)])  # fmt: skip
    assert traced.exit_code == 2
    assert "no identities to trace by: run reid-search identities fresh" in traced.stderr


def test_identities_grow_with_new_sightings_and_keep_the_old_ones(synth_root, tmp_path):
    """Index six people, link them; index six more into the same gallery and link again: only
    the new sightings are linked, the first six keep their identities and numbers."""
    import os
    import sqlite3

    data, crops = synth_root / "bbox_test", tmp_path / "crops"
    times = write_world_csv(data, tmp_path / "times.csv")
    people = sorted(p for p in data.iterdir() if p.is_dir())
    indexes, base = tmp_path / "indexes", ["--indexes-dir", str(tmp_path / "indexes")]

    def grow(folders) -> None:
        for folder in folders:
            os.symlink(folder, crops / folder.name)
        index_with_cli(crops, indexes, "grown", "--layout", "unlabelled", "--metadata", str(times))

    def stored() -> dict[int, int]:
        with sqlite3.connect(indexes / "grown" / "meta.sqlite") as con:
            return dict(con.execute("select faiss_id, identity from identities"))

    crops.mkdir()
    grow(people[:6])
    link = ["identities", "grown", *base, "--json"]
    first = json.loads(runner.invoke(app, [*link, "--threshold", "0.65"]).stdout)
    assert first["identities"] == 6 and first["linked"] == 18
    before = stored()
    grow(people[6:])
    second = json.loads(runner.invoke(app, link).stdout)
    assert second["linked"] == 18 and second["identities"] == 12
    assert second["threshold_source"] == "the last run's (incremental)" and second["threshold"] == 0.65
    after = stored()
    assert {i: after[i] for i in before} == before  # the first six: same identities, same numbers
