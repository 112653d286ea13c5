"""Hostile-but-fair input: no command deletes what it did not create, no walk hangs or crashes."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from reid_search.cli import app
from reid_search.gallery import GalleryError, check_gallery_name, list_galleries

from .conftest import index_with_cli


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize("name", [".", "..", "a/b", "../up", "has space", ".hidden", "-dash", "x" * 65, ""])
def test_unsafe_gallery_names_are_refused(name):
    with pytest.raises(GalleryError, match="not allowed"):
        check_gallery_name(name)


@pytest.mark.parametrize("name", [".", "..", "my gallery"])
def test_index_with_an_unsafe_name_touches_no_other_gallery(synth_root, tmp_path, name):
    indexes = tmp_path / "indexes"
    kept = index_with_cli(synth_root, indexes, "kept")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for extra in ([], ["--rebuild"]):
        result = _cli(
            "index", str(synth_root), "--name", name, "--indexes-dir", str(indexes), "--quiet", *extra
        )
        assert result.exit_code == 2, result.output
        assert "not allowed" in result.output and "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert list_galleries(indexes) == [kept]


def test_rebuild_swaps_only_its_own_folder(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    other = index_with_cli(synth_root, indexes, "other")
    index_with_cli(synth_root, indexes, "mine")
    other_files = {p: p.stat().st_ino for p in other.rglob("*")}
    index_with_cli(synth_root, indexes, "mine", "--rebuild")
    assert {p: p.stat().st_ino for p in other.rglob("*")} == other_files
    assert [p.name for p in list_galleries(indexes)] == ["mine", "other"]


def test_a_rebuild_in_progress_is_never_listed(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    index_with_cli(synth_root, indexes, "g")
    (indexes / ".g.rebuild").mkdir()
    (indexes / ".g.rebuild" / "manifest.json").write_text("{}")
    assert [p.name for p in list_galleries(indexes)] == ["g"]


def test_a_folder_name_with_spaces_becomes_a_safe_gallery_name(synth_root, tmp_path):
    data = tmp_path / "my crops"
    shutil.copytree(synth_root, data)
    indexes = tmp_path / "indexes"
    result = _cli("index", str(data), "--indexes-dir", str(indexes), "--quiet")
    assert result.exit_code == 0, result.output
    assert [p.name for p in list_galleries(indexes)] == ["my-crops"]


# ---------------------------------------------------------------- the server
def _served(synth_root, embedder, tmp_path, name: str = "synth") -> Path:
    from reid_search.gallery import build_gallery

    indexes = tmp_path / "indexes"
    gallery, _ = build_gallery(synth_root, name, embedder, indexes_dir=indexes, progress=False)
    gallery.close()
    return indexes


def _client(indexes: Path, **settings):
    from fastapi.testclient import TestClient

    from reid_search.serve import ServeConfig, create_app

    return TestClient(create_app(ServeConfig(indexes_dir=indexes, **settings)))


def _png(width: int, height: int, mode: str = "RGB") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new(mode, (width, height)).save(out, "PNG")
    return out.getvalue()


def _probe(synth_root: Path) -> tuple[str, bytes]:
    path = next(p for p in sorted(synth_root.rglob("*.jpg")) if p.name.startswith("0004C1"))
    return path.name, path.read_bytes()


@pytest.fixture()
def served(synth_root, embedder, tmp_path) -> Path:
    return _served(synth_root, embedder, tmp_path)


def test_a_request_over_its_total_pixel_budget_is_refused_before_decoding(served, monkeypatch):
    import reid_search.serve.app as app_module

    decoded = []
    real = app_module.decode_uploads
    monkeypatch.setattr(app_module, "decode_uploads", lambda *a: decoded.append(1) or real(*a))
    client = _client(served, max_request_pixels=3_000_000)
    files = [("images", (f"big{i}.png", _png(1000, 1000))) for i in range(4)]
    answer = client.post("/api/query", files=files)
    assert answer.status_code == 413 and "pixels in all" in answer.json()["detail"]
    assert decoded == []


def test_an_ico_whose_header_lies_is_refused_unread(served):
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (64, 64)).save(out, "ICO", sizes=[(16, 16)])
    answer = _client(served).post("/api/query", files=[("images", ("x.ico", out.getvalue()))])
    assert answer.status_code == 400 and "not accepted" in answer.json()["detail"]


def test_rerank_shortlist_is_capped_whatever_top_k_asks(served, synth_root, monkeypatch):
    import reid_search.search.query as query_module

    sizes = []
    real = query_module.rerank_similarities
    monkeypatch.setattr(query_module, "RERANK_SHORTLIST_MAX", 50)
    monkeypatch.setattr(
        query_module, "rerank_similarities", lambda q, g, c: sizes.append(len(g)) or real(q, g, c)
    )
    answer = _client(served).post(
        "/api/query",
        files=[("images", _probe(synth_root))],
        data={"rerank": "true", "top_k": "200", "matches": "50"},
    )
    assert answer.status_code == 200, answer.text
    assert sizes and max(sizes) <= 50


def test_the_token_is_checked_before_the_body_is_read(served):
    from reid_search.serve.guard import GuardConfig, RequestGuard

    read = []

    async def app(scope, receive, send):  # the application would read the body
        read.append(await receive())

    guard = RequestGuard(app, GuardConfig(token="s3cret", max_body_bytes=10))
    sent = []

    async def receive():
        read.append("body read")
        return {"type": "http.request", "body": b"x" * 5, "more_body": True}

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/api/query", "headers": [], "query_string": b""}
    asyncio.run(guard(scope, receive, send))
    assert sent[0]["status"] == 401 and read == []


def test_a_chunked_body_over_the_limit_is_cut_off(served):
    client = _client(served, max_upload_bytes=1000, max_files=1)  # whole request: 1000 + 1 MiB

    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    answer = client.post(
        "/api/query", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 413


def test_a_stalled_body_times_out(served):
    from reid_search.serve.guard import GuardConfig, RequestGuard

    async def app(scope, receive, send):
        await receive()
        await receive()

    async def stalled():
        await asyncio.sleep(5)

    guard = RequestGuard(app, GuardConfig(body_timeout=0.05))
    with pytest.raises(Exception, match="no request data"):
        asyncio.run(guard({"type": "http", "path": "/api/query", "headers": [], "query_string": b""},
                          stalled, None))  # fmt: skip


@pytest.mark.parametrize(
    "field, value",
    [
        ("camera", "9223372036854775808"),
        ("after", "0001-01-01T00:00:00+01:00"),
        ("min_score", "nan"),
        ("min_score", "2"),
    ],
)
def test_out_of_range_query_fields_are_400_not_500(served, synth_root, field, value):
    answer = _client(served).post("/api/query", files=[("images", _probe(synth_root))], data={field: value})
    assert 400 <= answer.status_code < 500, answer.text
    assert len(answer.text) < 1000


def test_ids_beyond_64_bits_and_long_file_names_are_handled(served, synth_root):
    client = _client(served)
    assert client.get("/api/thumb/synth/9223372036854775808").status_code in (404, 422)
    name, data = _probe(synth_root)
    answer = client.post("/api/query", files=[("images", ("a" * 3000 + name, data))])
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["query"]["images"][0]) <= 120


def test_broken_galleries_are_listed_unavailable_and_the_rest_still_work(served):
    (served / "broken").mkdir()
    (served / "broken" / "manifest.json").write_text("{not json")
    (served / "nodb").mkdir()
    (served / "nodb" / "manifest.json").write_text((served / "synth" / "manifest.json").read_text())
    listed = {g["name"]: g for g in _client(served).get("/api/galleries").json()}
    assert listed["synth"]["available"] is True
    assert listed["broken"]["available"] is False and listed["nodb"]["available"] is False


def test_a_symlink_repointed_outside_the_indexed_folder_is_not_served(synth_root, embedder, tmp_path):
    data = tmp_path / "crops"
    shutil.copytree(synth_root, data)
    victim = sorted(data.rglob("*.jpg"))[0]
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    indexes = _served(data, embedder, tmp_path, "crops")
    client = _client(indexes)
    from reid_search.gallery import Gallery

    with Gallery.open(indexes / "crops") as gallery:
        entry = next(i for i, r in gallery.rows().items() if r["path"] == str(victim))
    assert client.get(f"/api/image/crops/{entry}").status_code == 200
    victim.unlink()
    victim.symlink_to(secret)
    assert client.get(f"/api/image/crops/{entry}").status_code == 404
    assert client.get(f"/api/thumb/crops/{entry}").status_code == 404
    victim.unlink()
    victim.write_bytes(b"changed bytes")
    assert client.get(f"/api/image/crops/{entry}").status_code == 404


def test_a_query_of_a_gallery_from_precomputed_vectors_says_so(synth_root, tmp_path):

    vectors = tmp_path / "v.npz"
    assert _cli("embed", str(synth_root), "--out", str(vectors)).exit_code == 0
    indexes = tmp_path / "indexes"
    result = _cli("index", str(synth_root), "--vectors", str(vectors), "--name", "pre",
                  "--indexes-dir", str(indexes), "--quiet")  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = _client(indexes).post("/api/query", files=[("images", _probe(synth_root))])
    assert answer.status_code == 400 and "precomputed vectors" in answer.json()["detail"]


# ---------------------------------------------------------------- the CLI's walks
def test_a_symlink_loop_and_a_fifo_are_skipped_and_reported(synth_root, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    person = sorted(p for p in data.rglob("*") if p.is_dir() and not any(c.is_dir() for c in p.iterdir()))[0]
    (person / "loop").symlink_to(data)
    os.mkfifo(person / "stuck.jpg")
    args = ["index", str(data), "--name", "d", "--indexes-dir", str(tmp_path / "indexes"), "--quiet"]
    result = _cli(*args)
    assert result.exit_code == 0, result.output
    assert "a loop" in result.output and "not a regular file" in result.output
    query = _cli("query", str(person), "--index", "d", "--indexes-dir", str(tmp_path / "indexes"), "--json")
    assert query.exit_code == 0, query.output  # the FIFO is skipped, never read (it would block)


def test_evaluating_a_gallery_with_nothing_readable_is_one_error_line(tmp_path):
    bad = tmp_path / "bad" / "0001"
    bad.mkdir(parents=True)
    for name in ("a.jpg", "b.jpg"):
        (bad / name).write_text("not an image")
    indexes = tmp_path / "indexes"
    assert (
        _cli("index", str(bad.parent), "--name", "b", "--indexes-dir", str(indexes), "--quiet").exit_code == 0
    )
    for target in ("b", str(bad.parent)):
        result = _cli("evaluate", target, "--indexes-dir", str(indexes), "--out", str(tmp_path / "r"))
        assert result.exit_code == 2, result.output
        assert "nothing to evaluate" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- errors
def test_a_bug_keeps_its_traceback_and_a_project_error_is_one_line(monkeypatch, tmp_path):
    import reid_search.training.loop as training
    from reid_search.training.config import TrainingError

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug inside training")

    monkeypatch.setattr(training, "train", broken)
    args = ["train", str(tmp_path), "--out", str(tmp_path / "run"), "--architecture", "mini"]
    result = _cli(*args)
    assert result.exit_code == 1
    assert "ZeroDivisionError" in result.output and "please report it" in result.output

    def refused(*args, **kwargs):
        raise TrainingError("no images to train on")

    monkeypatch.setattr(training, "train", refused)
    result = _cli(*args)
    assert result.exit_code == 2 and result.output.strip() == "error: no images to train on"


def test_api_docs_work_offline(served):
    client = _client(served)
    page = client.get("/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "cdn" not in page.text.lower() and "http://" not in page.text and "https://" not in page.text
    assert "/api/query" in client.get("/openapi.json").json()["paths"]


def test_rebuild_reports_the_index_it_wrote(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    index_with_cli(synth_root, indexes, "g")
    args = ["index", str(synth_root), "--name", "g", "--indexes-dir", str(indexes), "--quiet", "--rebuild"]
    result = _cli(*args)
    assert result.exit_code == 0 and "index Flat written" in result.output, result.output


def test_an_unreadable_sub_folder_is_reported_not_a_traceback(synth_root, tmp_path, monkeypatch):
    import reid_search.data.layouts.walk as walk

    data = tmp_path / "data"
    shutil.copytree(synth_root, data)
    locked = sorted(p for p in data.rglob("*") if p.is_dir())[-1]
    real_scandir = os.scandir

    def scandir(path):  # as a non-root user sees a folder without read permission
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    result = _cli("index", str(data), "--name", "d", "--indexes-dir", str(tmp_path / "indexes"), "--quiet")
    assert result.exit_code == 0, result.output
    assert "unreadable folder (Permission denied)" in result.output


def test_reranking_memory_is_bounded_at_the_shortlist_cap():
    import tracemalloc

    import numpy as np

    from reid_search.search.query import RERANK_SHORTLIST_MAX
    from reid_search.search.rerank import RerankConfig, rerank_similarities

    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(RERANK_SHORTLIST_MAX, 256)).astype(np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    tracemalloc.start()
    rerank_similarities(gallery[:1], gallery, RerankConfig())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 200 * 2**20, f"{peak / 2**20:.0f} MB"


def test_a_query_folder_without_images_names_the_folder(synth_root, tmp_path):
    indexes = tmp_path / "indexes"
    index_with_cli(synth_root, indexes, "g")
    (tmp_path / "empty").mkdir()
    result = _cli("query", str(tmp_path / "empty"), "--index", "g", "--indexes-dir", str(indexes))
    assert result.exit_code == 2
    assert f"error: {tmp_path / 'empty'}: no query image there" in result.output
