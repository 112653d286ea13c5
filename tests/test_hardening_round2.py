"""Hardening, round 2: file swaps, stored scripts, re-pointed videos, frame floods and slow clients."""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from reid_search.gallery import Gallery

from .test_hardening import _client, _served


def _entry_of(indexes: Path, name: str, path: Path) -> int:
    with Gallery.open(indexes / name) as gallery:
        return next(i for i, r in gallery.rows().items() if r["path"] == str(path))


def test_a_file_swapped_after_its_check_is_never_served(synth_root, embedder, tmp_path, monkeypatch):
    data = tmp_path / "crops"
    shutil.copytree(synth_root, data)
    victim = sorted(data.rglob("*.jpg"))[0]
    good = victim.read_bytes()
    secret = tmp_path / "passwd"
    secret.write_text("root:x:0:0:secret")
    indexes = _served(data, embedder, tmp_path, "crops")
    entry = _entry_of(indexes, "crops", victim)
    import reid_search.serve.app as served_app

    checked = served_app.entry_image

    def check_then_swap(gallery, faiss_id):  # the attacker wins every race: swap right after the check
        result = checked(gallery, faiss_id)
        victim.unlink()
        victim.symlink_to(secret)
        return result

    monkeypatch.setattr(served_app, "entry_image", check_then_swap)
    reply = _client(indexes).get(f"/api/image/crops/{entry}")
    assert reply.status_code == 200 and reply.content == good  # what was checked is what is sent
    assert b"secret" not in reply.content


def _jpeg_with_script() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (32, 64), (200, 30, 30)).save(out, "JPEG")
    data = out.getvalue()
    comment = b"<html><script>fetch('/steal?'+document.cookie)</script></html>"
    marker = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment  # a JPEG COM segment
    return data[:2] + marker + data[2:]


def test_an_image_is_served_as_the_type_its_bytes_have_with_nosniff_and_a_policy(embedder, tmp_path):
    from reid_search.data.synthetic import generate_dataset

    data = generate_dataset(tmp_path / "crops", n_people=4, n_cameras=2, frames_per_tracklet=2)
    page = tmp_path / "crops" / "p.html"
    page.write_bytes(_jpeg_with_script())
    victim = sorted(data.rglob("*.jpg"))[0]
    victim.unlink()
    victim.symlink_to(page)  # an indexed a.jpg that is a link to an .html file holding a valid JPEG
    indexes = _served(data, embedder, tmp_path, "crops")
    entry = _entry_of(indexes, "crops", victim)
    reply = _client(indexes).get(f"/api/image/crops/{entry}")
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in reply.headers["content-security-policy"]
    assert reply.headers["content-disposition"].startswith("inline; filename=")
    page_reply = _client(indexes).get("/")
    assert "frame-ancestors 'none'" in page_reply.headers["content-security-policy"]


def test_the_page_never_puts_the_token_in_a_url():
    from importlib import resources

    page = resources.files("reid_search.serve").joinpath("static/index.html").read_text("utf-8")
    assert "token=" not in page.replace('get("token")', "")  # read from the address bar, never written
    assert "history.replaceState" in page and "createObjectURL(await response.blob())" in page


def test_a_refusal_closes_the_connection(synth_root, embedder, tmp_path):
    indexes = _served(synth_root, embedder, tmp_path)
    client = _client(indexes, token="s3cret")
    reply = client.post("/api/query", content=b"x" * 1000, headers={"content-type": "multipart/form-data"})
    assert reply.status_code == 401 and reply.headers["connection"] == "close"


def test_frames_are_served_from_a_bounded_pool_and_a_flood_gets_503(monkeypatch):
    from reid_search.video.served_frames import Busy, FrameRequest, FrameServer

    server = FrameServer(slots=1, queue=1, seconds=5.0)
    release = threading.Event()
    monkeypatch.setattr(server, "_render", lambda request: release.wait(5) and b"jpeg")
    results: list = []

    def ask(frame: int) -> None:
        try:
            results.append(server.jpeg(FrameRequest("v.mp4", 10, "ab", frame, None, [0, 0, 1, 1])))
        except Busy:
            results.append("busy")

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    started = time.perf_counter()
    ask(99)  # one decoding, one waiting: the third is turned away at once
    assert results == ["busy"] and time.perf_counter() - started < 0.5
    release.set()
    for t in threads:
        t.join()
    assert sorted(map(str, results)) == ["b'jpeg'", "b'jpeg'", "busy"]
    monkeypatch.setattr(server, "_render", lambda request: pytest.fail("decoded again"))
    assert server.jpeg(FrameRequest("v.mp4", 10, "ab", 0, None, [0, 0, 1, 1])) == b"jpeg"  # cached


def _tiny_video(path: Path, frames: int = 60) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.gop_size = 10
        for i in range(frames):
            pixels = np.full((48, 64, 3), (i * 4) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def test_a_late_frame_is_found_by_seeking_and_a_replaced_video_is_refused(tmp_path):
    from reid_search._files import file_sha256
    from reid_search.video.decode import VideoError
    from reid_search.video.served_frames import FrameRequest, FrameServer

    video = _tiny_video(tmp_path / "cam.mp4")
    request = FrameRequest(str(video), video.stat().st_size, file_sha256(video), 45, 4.5, [5, 5, 30, 40])
    picture = Image.open(io.BytesIO(FrameServer().jpeg(request)))
    grey = picture.convert("L").getpixel((50, 40))
    assert abs(grey - 180) < 12  # frame 45 painted 45 * 4
    other = _tiny_video(tmp_path / "other.mp4", frames=30)
    video.unlink()
    video.symlink_to(other)  # re-pointed after indexing
    with pytest.raises(VideoError, match="changed since it was indexed"):
        FrameServer().jpeg(request)
    video.unlink()
    import os

    os.mkfifo(video)  # a FIFO in its place is refused at once, never waited on
    started = time.perf_counter()
    with pytest.raises(VideoError, match="regular file"):
        FrameServer().jpeg(request)
    assert time.perf_counter() - started < 2


@contextlib.contextmanager
def _real_server(indexes: Path, protocol=None, **settings):
    """The app under uvicorn in a thread on a free loopback port; yields the port."""
    import uvicorn

    from reid_search.serve import ServeConfig, create_app
    from reid_search.serve.protocol import GuardedH11Protocol

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(ServeConfig(indexes_dir=indexes, **settings))
    server = uvicorn.Server(
        uvicorn.Config(app, port=port, http=protocol or GuardedH11Protocol, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_slow_header_senders_are_cut_off_and_health_still_answers(synth_root, embedder, tmp_path):
    from reid_search.serve.protocol import GuardedH11Protocol

    class Quick(GuardedH11Protocol):
        header_seconds = 1.0
        max_connections = 40

    slow = []
    with _real_server(_served(synth_root, embedder, tmp_path), Quick) as port:
        try:
            for _ in range(100):  # more half-sent requests than the server keeps
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                slow.append(s)
            latencies = []
            for _ in range(10):
                started = time.perf_counter()
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                    reply = s.recv(4096)
                latencies.append(time.perf_counter() - started)
                assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
            assert max(latencies) < 1.0
            time.sleep(1.5)  # past the header deadline: every slow connection was closed
            closed = 0
            for s in slow:
                try:
                    s.settimeout(0.5)
                    closed += s.recv(1) == b""
                except OSError:
                    closed += 1
            assert closed == len(slow)
        finally:
            for s in slow:
                s.close()


def test_an_unauthenticated_chunked_upload_is_cut_off_within_10_mb(synth_root, embedder, tmp_path):
    head = (
        b"POST /api/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    chunk = f"{2**16:x}\r\n".encode() + b"\0" * 2**16 + b"\r\n"
    sent = 0
    with (
        _real_server(_served(synth_root, embedder, tmp_path), token="s3cret") as port,
        socket.create_connection(("127.0.0.1", port), timeout=10) as s,
    ):
        s.sendall(head)
        try:
            while sent < 200 * 2**20:  # 200 MB planned
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:  # the server closed the connection
            pass
    assert sent < 10 * 2**20


def _cli(*args: str):
    from typer.testing import CliRunner

    from reid_search.cli import app

    return CliRunner().invoke(app, list(args))


def test_a_symlink_loop_between_two_files_is_skipped_not_a_traceback(mars_samples, tmp_path):
    folder = tmp_path / "loop"
    shutil.copytree(mars_samples, folder)
    (folder / "a.jpg").symlink_to("b.jpg")
    (folder / "b.jpg").symlink_to("a.jpg")
    result = _cli("index", str(folder), "--name", "loop", "--indexes-dir", str(tmp_path / "ix"), "--quiet")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output and "a.jpg: not a regular file" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (("export-clip", "99999999999999999999999", "--out", "c.mp4"), "numbered 0 to 2^63 - 1"),
        (("export-clip", "0", "--out", "c.txt"), "write a clip as .mp4"),
        (("query", "x.jpg", "--plot", "p.txt"), "a figure is written as .png"),
    ],
)
def test_impossible_outputs_are_one_error_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = _cli(*args)
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output


@pytest.mark.parametrize("damage", ["no meta.sqlite", "meta.sqlite not SQLite", "manifest a JSON list"])
def test_a_damaged_gallery_is_a_4xx_on_every_endpoint(synth_root, embedder, tmp_path, damage):
    indexes = _served(synth_root, embedder, tmp_path, "hurt")
    folder = indexes / "hurt"
    if damage == "no meta.sqlite":
        (folder / "meta.sqlite").unlink()
    elif damage == "meta.sqlite not SQLite":
        (folder / "meta.sqlite").write_bytes(b"not a database " * 20)
    else:
        (folder / "manifest.json").write_text("[1, 2]")
    client = _client(indexes)
    image = next(synth_root.rglob("*.jpg")).read_bytes()
    replies = [
        client.post("/api/query", files={"images": ("a.jpg", image)}, data={"gallery": "hurt"}),
        client.post(
            "/api/compare",
            files={"image_a": ("a.jpg", image), "image_b": ("b.jpg", image)},
            data={"gallery": "hurt"},
        ),  # fmt: skip
        client.get("/api/thumb/hurt/0"),
        client.get("/api/image/hurt/0"),
        client.get("/api/frame/hurt/0"),
    ]
    assert [r.status_code // 100 for r in replies] == [4] * 5, [r.text for r in replies]
    assert all("detail" in r.json() for r in replies)


def test_an_unknown_entry_is_404_on_frame_as_on_thumb_and_image(synth_root, embedder, tmp_path):
    client = _client(_served(synth_root, embedder, tmp_path))
    assert [client.get(f"/api/{kind}/synth/99999").status_code for kind in ("frame", "thumb", "image")] == [
        404
    ] * 3


@pytest.mark.parametrize(
    "option, message",
    [
        (("--input-size", "abc"), "expected HEIGHTxWIDTH"),
        (("--input-size", "99999x99999"), "must be 1 to 1024"),
        (("--lr", "inf"), "--lr inf: must be a finite number"),
        (("--loss", "triplet=nan"), "--loss triplet nan: must be a finite number"),
        (("--triplet-margin", "nan"), "--triplet-margin nan"),
        (("--downscale", "5"), "--downscale 5: is a probability"),
        (("--random-erasing", "7"), "--random-erasing 7: is a probability"),
        (("--teacher-targets", "/etc/passwd", "--loss", "distill"), "/etc/passwd: not a readable .npz file"),
        (("--architecture", "mobilenetv2", "--backbone-weights", "/etc/passwd"), "not MobileNetV2 weights"),
    ],
)
def test_train_refuses_settings_no_run_can_use_in_one_line(synth_root, tmp_path, option, message):
    args = [
        "train",
        str(synth_root),
        "--out",
        str(tmp_path / "run"),
        "--architecture",
        "mini",
        "--input-size",
        "64x32",
    ]
    result = _cli(*args, "--epochs", "1", "--steps-per-epoch", "1", "--p", "2", "--k", "2", *option)
    assert result.exit_code == 2 and result.output.startswith("error: ") and message in result.output
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_threads_must_be_positive(synth_root, tmp_path):
    result = _cli("train", str(synth_root), "--out", str(tmp_path / "run"), "--threads", "-1")
    assert result.exit_code == 2 and "Traceback" not in result.output


def _run_guard(config, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
    """Drive a RequestGuard with a body in ``chunks``; returns (status sent, bytes the app read)."""
    import asyncio

    from reid_search.serve.guard import RequestGuard

    read = 0

    async def app(scope, receive, send):
        nonlocal read
        while True:
            message = await receive()
            read += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})

    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]

    async def receive():
        return queue.pop(0)

    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "path": "/api/query", "headers": headers, "query_string": b""}
    try:
        asyncio.run(RequestGuard(app, config)(scope, receive, send))
    except Exception as exc:  # the HTTPException the application turns into a response
        return getattr(exc, "status_code", None), read
    return sent[0]["status"], read


def test_a_multipart_body_with_too_many_parts_is_cut_off_while_it_streams():
    from reid_search.serve.guard import GuardConfig

    part = (
        b'--B\r\nContent-Disposition: form-data; name="images"; filename="a.jpg"\r\n\r\n'
        + b"x" * 1000
        + b"\r\n"
    )
    chunks = [part] * 240 + [b"--B--\r\n"]
    headers = [(b"content-type", b"multipart/form-data; boundary=B"), (b"transfer-encoding", b"chunked")]
    status, read = _run_guard(GuardConfig(max_parts=48), headers, chunks)
    assert status == 413 and read < 60 * len(part)  # refused near part 49, not after 240


def test_bodies_beyond_the_slots_wait_then_get_a_503():
    import asyncio

    from reid_search.serve.guard import GuardConfig, RequestGuard

    guard = RequestGuard(None, GuardConfig(body_slots=2, slot_wait=0.2))
    sent = []

    async def send(message):
        sent.append(message)

    async def scenario():
        guard.slots = asyncio.Semaphore(2)
        await guard.slots.acquire()
        await guard.slots.acquire()  # two uploads are being read
        scope = {
            "type": "http",
            "path": "/api/query",
            "headers": [(b"content-length", b"10")],
            "query_string": b"",
        }
        started = asyncio.get_running_loop().time()
        await guard(scope, None, send)
        return asyncio.get_running_loop().time() - started

    waited = asyncio.run(scenario())
    assert sent[0]["status"] == 503 and 0.15 < waited < 1.0


def test_a_422_names_the_field_without_repeating_the_input(synth_root, embedder, tmp_path):
    client = _client(_served(synth_root, embedder, tmp_path))
    image = next(synth_root.rglob("*.jpg")).read_bytes()
    reply = client.post("/api/query", files={"images": ("a.jpg", image)}, data={"top_k": "x" * 900_000})
    assert reply.status_code == 422 and len(reply.content) < 400 and "top_k" in reply.json()["detail"]


def test_a_decompression_bomb_is_refused_as_too_many_pixels(synth_root, embedder, tmp_path):
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)  # a 900 MP PNG header
    png = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )
    client = _client(_served(synth_root, embedder, tmp_path))
    reply = client.post("/api/query", files={"images": ("bomb.png", png)})
    assert reply.status_code == 413 and "too many pixels" in reply.json()["detail"]


def test_the_host_check_reads_the_host_not_a_userinfo_trick():
    from reid_search.serve.guard import host_name

    assert host_name("127.0.0.1:80@evil.com") == "" and host_name("localhost:8000") == "localhost"


def test_per_query_csv_cells_never_run_as_formulas():
    from reid_search.evaluation.report import csv_safe

    assert [csv_safe(v) for v in ("=1+2", "+1", "-1", "@SUM(A1)", "0744")] == [
        "'=1+2",
        "'+1",
        "'-1",
        "'@SUM(A1)",
        "0744",
    ]


def test_evaluating_a_camera_against_itself_says_no_query_can_be_scored(cuhk_test):
    result = _cli("evaluate", str(cuhk_test), "--query-camera", "1", "--gallery-camera", "1")
    assert result.exit_code == 2 and "no query could be scored" in result.output


def test_a_query_folder_with_an_unreadable_sub_folder_says_so(synth_root, embedder, tmp_path, monkeypatch):
    import os

    import reid_search.data.layouts.walk as walk

    indexes = _served(synth_root, embedder, tmp_path)
    query = tmp_path / "query"
    (query / "locked").mkdir(parents=True)
    shutil.copy(next(synth_root.rglob("*.jpg")), query / "a.jpg")
    real_scandir = os.scandir

    def scandir(path):  # as a non-root user sees a folder without read permission
        if Path(path) == query / "locked":
            raise PermissionError(13, "Permission denied")
        return real_scandir(path)

    monkeypatch.setattr(walk.os, "scandir", scandir)
    result = _cli("query", str(query), "--index", "synth", "--indexes-dir", str(indexes), "--json")
    assert result.exit_code == 0, result.output
    assert "locked: unreadable folder (Permission denied)" in result.output


def test_indexing_only_unreadable_videos_leaves_no_empty_gallery(tmp_path):
    from .test_video import DETECTOR

    video = tmp_path / "broken.mp4"
    video.write_bytes(b"\0\0\0\x18ftypmp42" + b"garbage" * 100)
    indexes = tmp_path / "indexes"
    result = _cli(
        "index", str(video), "--name", "v", "--indexes-dir", str(indexes), "--detector", str(DETECTOR), "-q"
    )
    assert result.exit_code == 2 and "no gallery written" in result.output, result.output
    assert not (indexes / "v").exists()


@pytest.mark.parametrize("rebuild", [(), ("--rebuild",)])
def test_a_gallery_name_that_is_a_file_is_refused_and_the_file_kept(mars_samples, tmp_path, rebuild):
    indexes = tmp_path / "indexes"
    indexes.mkdir()
    (indexes / "README.md").write_text("keep me")
    result = _cli(
        "index", str(mars_samples), "--name", "README.md", "--indexes-dir", str(indexes), "-q", *rebuild
    )
    assert result.exit_code == 2 and "is not a gallery folder" in result.output
    assert (indexes / "README.md").read_text() == "keep me"


def test_a_body_trickling_a_byte_at_a_time_is_cut_off_by_the_whole_body_deadline():
    import asyncio

    from reid_search.serve.guard import GuardConfig, RequestGuard

    async def app(scope, receive, send):
        while (await receive()).get("more_body"):
            pass

    async def trickle():
        await asyncio.sleep(0.05)  # never a pause long enough for the per-chunk timeout
        return {"type": "http.request", "body": b"x", "more_body": True}

    guard = RequestGuard(app, GuardConfig(body_timeout=1.0, body_seconds=0.4))
    scope = {
        "type": "http",
        "path": "/api/query",
        "headers": [(b"content-length", b"100000")],
        "query_string": b"",
    }
    started = time.perf_counter()
    with pytest.raises(Exception, match="no request data") as caught:
        asyncio.run(guard(scope, trickle, lambda message: None))
    assert getattr(caught.value, "status_code", None) == 408 and time.perf_counter() - started < 2


def test_a_file_rewritten_in_place_with_its_size_and_time_kept_is_not_served(synth_root, embedder, tmp_path):
    import os

    data = tmp_path / "crops"
    shutil.copytree(synth_root, data)
    victim = sorted(data.rglob("*.jpg"))[0]
    indexes = _served(data, embedder, tmp_path, "crops")
    entry = _entry_of(indexes, "crops", victim)
    client = _client(indexes)
    assert client.get(f"/api/image/crops/{entry}").status_code == 200  # any cache is warm now
    before = victim.stat()
    other = sorted(synth_root.rglob("*.jpg"))[-1].read_bytes()
    with open(victim, "r+b") as handle:  # same inode, same size
        handle.write((other + b"\0" * before.st_size)[: before.st_size])
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert victim.stat().st_size == before.st_size and victim.stat().st_ino == before.st_ino
    assert client.get(f"/api/image/crops/{entry}").status_code == 404
