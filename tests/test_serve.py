"""The HTTP API: answers, limits, the token, path safety, and a gallery that grows while served."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from reid_search.gallery import build_gallery
from reid_search.serve import ServeConfig, create_app


@pytest.fixture()
def served(synth_root, embedder, tmp_path):
    indexes = tmp_path / "indexes"
    gallery, _ = build_gallery(synth_root, "synth", embedder, indexes_dir=indexes, progress=False)
    gallery.close()
    return indexes


def client_for(indexes, **settings) -> TestClient:
    return TestClient(create_app(ServeConfig(indexes_dir=indexes, **settings)))


def crop(synth_root, person: str = "0004", camera: int = 1):
    path = next(p for p in sorted(synth_root.rglob("*.jpg")) if p.name.startswith(f"{person}C{camera}"))
    return path.name, path.read_bytes()


def png_bytes(width: int, height: int, noise: bool = False) -> bytes:
    out = io.BytesIO()
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8) if noise else None
    image = Image.fromarray(pixels) if noise else Image.new("RGB", (width, height), (90, 60, 30))
    image.save(out, "PNG")
    return out.getvalue()


def test_health_and_galleries(served):
    client = client_for(served)
    assert client.get("/api/health").json()["galleries"] == 1
    (listed,) = client.get("/api/galleries").json()
    assert listed["name"] == "synth" and listed["size"] == 108 and listed["cameras"] == [1, 2, 3]


def test_query_answers_in_the_query_schema_with_filters_and_the_same_camera_rule(served, synth_root):
    client = client_for(served)
    name, data = crop(synth_root)
    answer = client.post("/api/query", files=[("images", (name, data, "image/jpeg"))], data={"top_k": "3"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["schema"] == "reid-search/query/v2" and body["query"]["images"] == [name]
    assert body["results"][0]["person"] == "0004" and len(body["results"]) == 3
    ruled = client.post(
        "/api/query",
        files=[("images", (name, data, "image/jpeg"))],
        data={"same_camera_rule": "true", "camera": ["1", "2"], "top_k": "5"},
    ).json()
    cams = {m["camera"] for r in ruled["results"] for m in r["matches"]}
    assert cams <= {1, 2} and ("0004", 1) not in {
        (m["person"], m["camera"]) for r in ruled["results"] for m in r["matches"]
    }
    assert ruled["query"]["excluded"] == {"person_camera": {"person": "0004", "camera": 1}}


def test_compare_gives_similarity_and_verdict(served, synth_root):
    client = client_for(served)
    a, b, c = crop(synth_root, "0004", 1), crop(synth_root, "0004", 2), crop(synth_root, "0007", 2)
    r = client.post("/api/compare", files={"image_a": (a[0], a[1]), "image_b": (b[0], b[1])})
    assert r.status_code == 200, r.text
    body = r.json()
    other = client.post("/api/compare", files={"image_a": (a[0], a[1]), "image_b": (c[0], c[1])}).json()
    assert body["image_a"] == a[0] and body["similarity"] > other["similarity"]
    for answer in (body, other):
        assert answer["same"] == (answer["similarity"] >= answer["threshold"])
        assert answer["verdict"] == ("same person" if answer["same"] else "different people")


def test_thumbnails_are_served_by_id_only(served):
    client = client_for(served)
    ok = client.get("/api/thumb/synth/0")
    assert ok.status_code == 200 and ok.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(ok.content)).height == 160
    assert client.get("/api/thumb/synth/99999").status_code == 404
    attempts = ["synth/..%2F..%2Fetc%2Fpasswd", "synth/-1", "synth/0%20or%201"]  # ids are integers
    attempts += [f"{g}/0" for g in ("..", "..%2F..%2Fetc", ".synth", "%2Fetc", "synth%2F..%2Fsynth", "SYNTH")]
    for attempt in attempts:
        refused = client.get(f"/api/thumb/{attempt}")
        assert refused.status_code in (404, 422) and "image" not in refused.headers["content-type"], attempt
    assert client.get("/api/image/synth/0").status_code == 200


@pytest.mark.parametrize(
    "upload, status, reason",
    [
        (("big.png", png_bytes(64, 64, noise=True)), 413, "larger than"),
        (("huge.png", png_bytes(3000, 3000)), 400, "pixels, more than"),
        (("notes.jpg", b"this is not an image"), 400, "not an image"),
        (("empty.jpg", b""), 400, "empty file"),
    ],
)
def test_bad_uploads_are_refused_with_the_reason(served, upload, status, reason):
    limits = {"max_upload_bytes": 200 if upload[0] == "big.png" else 2**20, "max_pixels": 1_000_000}
    client = client_for(served, **limits)
    r = client.post("/api/query", files=[("images", upload)])
    assert r.status_code == status and reason in r.json()["detail"]
    assert client.get("/api/health").status_code == 200  # and the server carries on


def test_too_many_files_and_too_large_bodies_are_413(served, synth_root):
    client = client_for(served, max_files=2, max_upload_bytes=2**20)
    name, data = crop(synth_root)
    r = client.post("/api/query", files=[("images", (name, data))] * 3)
    assert r.status_code == 413 and "at most 2" in r.json()["detail"]
    big = client.post(
        "/api/query", content=b"x" * (4 * 2**20), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert big.status_code == 413


def test_a_token_guards_every_api_call(served, synth_root):
    client = client_for(served, token="s3cret")
    assert client.get("/api/health").status_code == 401
    assert client.get("/api/thumb/synth/0").status_code == 401
    assert client.get("/api/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/api/health", headers={"X-Token": "wrong"}).status_code == 401
    assert client.get("/api/thumb/synth/0?token=s3cret").status_code == 200
    assert client.get("/").status_code == 200  # the page itself holds no data


def test_unknown_gallery_is_404(served, synth_root):
    name, data = crop(synth_root)
    r = client_for(served).post("/api/query", files=[("images", (name, data))], data={"gallery": "nope"})
    assert r.status_code == 404 and "no gallery 'nope'" in r.json()["detail"]


def test_the_page_needs_no_cdn(served):
    page = client_for(served).get("/").text
    assert 'id="drop"' in page and "/api/query" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)


def test_entries_added_while_serving_are_found_without_a_restart(served, synth_root, embedder, tmp_path):
    from reid_search.data.synthetic import generate_dataset

    client = client_for(served)
    newcomers = generate_dataset(
        tmp_path / "more", n_people=2, n_cameras=3, frames_per_tracklet=3, seed=9, first_person=50
    )
    name, data = crop(newcomers, "0050", 1)
    before = client.post("/api/query", files=[("images", (name, data))], data={"top_k": "1"}).json()
    assert before["results"][0]["person"] != "0050"
    gallery, report = build_gallery(newcomers, "synth", embedder, indexes_dir=served, progress=False)
    gallery.close()
    assert report.added == 18
    after = client.post("/api/query", files=[("images", (name, data))], data={"top_k": "1"}).json()
    assert after["results"][0]["person"] == "0050"
    assert client.get("/api/galleries").json()[0]["size"] == 126
    assert np.isfinite(after["results"][0]["score"])


def test_serve_without_the_extra_names_it(monkeypatch):
    import sys

    from typer.testing import CliRunner

    from reid_search.cli import app

    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if FastAPI were not installed
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2 and "pip install 'reid-search[serve]'" in result.stderr


@pytest.mark.parametrize("option", [["--port", "70000"], ["--port", "0"], ["--workers", "0"]])
def test_a_port_or_worker_count_that_cannot_work_is_refused_before_serving(option):
    from typer.testing import CliRunner

    from reid_search.cli import app

    result = CliRunner().invoke(app, ["serve", *option])
    assert result.exit_code == 2 and f"Invalid value for '{option[0]}'" in result.output
    assert "reid-search on http" not in result.output


def test_queries_during_a_build_see_only_whole_committed_batches(served, embedder, tmp_path):
    """While ``index`` commits batches into the served gallery, every answer is whole: 200,
    and every entry it names has its row (never a vector without its row or the reverse)."""
    import threading

    from reid_search.data.synthetic import generate_dataset

    client = client_for(served)
    newcomers = generate_dataset(
        tmp_path / "more", n_people=8, n_cameras=3, frames_per_tracklet=4, seed=3, first_person=60
    )
    probe = next(p for p in sorted(newcomers.rglob("*.jpg")) if p.name.startswith("0060C1"))
    building = threading.Thread(
        target=lambda: build_gallery(newcomers, "synth", embedder, indexes_dir=served, progress=False)[
            0
        ].close()
    )
    sizes = []
    building.start()
    while building.is_alive() or len(sizes) < 3:
        answer = client.post(
            "/api/query", files=[("images", (probe.name, probe.read_bytes()))], data={"top_k": "20"}
        )
        assert answer.status_code == 200, answer.text
        ids = [m["faiss_id"] for r in answer.json()["results"] for m in r["matches"]]
        assert all(client.get(f"/api/thumb/synth/{i}").status_code == 200 for i in ids[:5])
        sizes.append(client.get("/api/galleries").json()[0]["size"])
    building.join()
    sizes.append(client.get("/api/galleries").json()[0]["size"])
    assert sizes == sorted(sizes) and sizes[-1] == 108 + 96  # grew, never shrank, ended whole


def test_every_project_error_is_its_status_in_one_json_shape(tmp_path):
    """Whatever project error a route meets (a video gone, a busy decoder, a missing extra),
    the answer is {"detail": one line} with that error's status, never a 500."""
    from reid_search.errors import MissingExtra
    from reid_search.video.decode import VideoError
    from reid_search.video.served_frames import Busy

    app = create_app(ServeConfig(indexes_dir=tmp_path))
    raised = {"video": VideoError("v.mp4: no longer readable"), "busy": Busy("frames: busy"),
              "extra": MissingExtra("x needs y: pip install 'reid-search[z]'")}  # fmt: skip
    for name, error in raised.items():
        app.add_api_route(f"/api/raise-{name}", lambda error=error: (_ for _ in ()).throw(error))
    client = TestClient(app, raise_server_exceptions=False)
    answers = {name: client.get(f"/api/raise-{name}") for name in raised}
    assert {n: r.status_code for n, r in answers.items()} == {"video": 400, "busy": 503, "extra": 501}
    assert {n: r.json() for n, r in answers.items()} == {n: {"detail": str(e)} for n, e in raised.items()}
    assert answers["busy"].headers["Retry-After"] == "2"
