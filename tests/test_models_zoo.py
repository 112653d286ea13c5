"""The model zoo and detectors by name: `reid-search models`, `models fetch`, and a wheel that
indexes video outside the checkout (no ../shared path in any card it reads)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

from typer.testing import CliRunner

from reid_search.cli import app

from .conftest import REPO, shared_data

runner = CliRunner()
DETECTOR = "person-detection-0202"


def detector_files() -> Path:
    return shared_data().parent / "peers" / "detectors" / DETECTOR


def intel_video() -> Path:
    return shared_data().parent / "video" / "intel-sample" / "one-by-one-person-detection.mp4"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, seconds: float = 20.0) -> None:
    import socket
    import time

    deadline = time.time() + seconds
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"nothing listens on port {port}")


def offline(url, out):
    from reid_search.errors import UnavailableError

    raise UnavailableError(f"{url}: cannot download (no network here)")


def test_video_without_an_installed_detector_offline_says_how_to_install_it(tmp_path, monkeypatch):
    import reid_search.video.detector_store as store

    monkeypatch.setenv("REID_SEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(store, "_download", offline)
    result = runner.invoke(app, ["index", str(intel_video()), "--indexes-dir", str(tmp_path / "ix"), "-q"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert line.startswith("error: person detector person-detection-0202 could not be downloaded")
    assert f"reid-search models fetch {DETECTOR}" in line and "--from DIR" in line
    assert not (tmp_path / "ix").exists() or not any((tmp_path / "ix").iterdir())  # nothing written


def test_video_from_a_plain_install_fetches_the_default_detector_on_first_use(tmp_path, monkeypatch):
    """No detector installed: `index VIDEO` downloads the default one from its card's addresses
    (the network simulated by serving ../shared's copies of those files), checks their sha256,
    installs it once and indexes; a second run needs no download."""
    import reid_search.video.detector_store as store

    fetched = []

    def from_the_network(url, out):
        fetched.append(url)
        shutil.copyfile(detector_files() / url.rsplit("/", 1)[-1], out)

    monkeypatch.setenv("REID_SEARCH_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(store, "_download", from_the_network)
    video = tmp_path / "lobby_cam3.mp4"
    shutil.copyfile(intel_video(), video)
    args = ["index", str(video), "--indexes-dir", str(tmp_path / "ix"), "--detect-every", "2", "-q"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fetching it once" in result.output and len(fetched) == 2
    assert all(u.startswith("https://storage.openvinotoolkit.org/") for u in fetched)
    assert (tmp_path / "home" / "detectors" / DETECTOR / f"{DETECTOR}.card.json").is_file()
    assert store.resolve_detector(None, download=True).is_file() and len(fetched) == 2  # no second download


def test_fetch_checks_every_file_and_installs_nothing_half(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_SEARCH_HOME", str(tmp_path / "home"))
    damaged = tmp_path / "damaged"
    shutil.copytree(detector_files(), damaged)
    (damaged / f"{DETECTOR}.bin").chmod(0o644)
    with open(damaged / f"{DETECTOR}.bin", "r+b") as handle:  # one flipped byte
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))
    result = runner.invoke(app, ["models", "fetch", DETECTOR, "--from", str(damaged)])
    assert result.exit_code == 2 and "sha256" in result.stderr and "not installed" in result.stderr
    installed = tmp_path / "home" / "detectors" / DETECTOR
    assert not (installed / f"{DETECTOR}.card.json").exists()  # no card: not installed
    assert not (installed / f"{DETECTOR}.bin").exists()

    result = runner.invoke(app, ["models", "fetch", DETECTOR, "--from", str(detector_files())])
    assert result.exit_code == 0, result.output
    card = json.loads((installed / f"{DETECTOR}.card.json").read_text())
    assert card["licence"].startswith("Apache-2.0") and card["model_file"] == f"{DETECTOR}.xml"
    listed = runner.invoke(app, ["models", "--json"])
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert rows[DETECTOR]["state"] == "installed" and rows["yolox-nano"]["state"].startswith("to install")
    assert rows["default"]["kind"] == "re-id" and rows["default"]["card"]["embedding_dim"] == 256


def test_an_unknown_detector_lists_the_known_ones(tmp_path, monkeypatch):
    monkeypatch.setenv("REID_SEARCH_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["models", "fetch", "yolo-huge"])
    assert result.exit_code == 2
    assert "unknown detector 'yolo-huge'; known: person-detection-0202, yolox-nano" in result.stderr


def _run(cmd: list[str], cwd: Path, env: dict, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_the_wheel_indexes_video_and_answers_outside_the_checkout(tmp_path):
    """Build the wheel, install it (its dependencies as installed here: no download) into a
    fresh venv outside the checkout, and there run the demo, install the detector the way a
    user without internet would, index the sample video copied beside it and query it."""
    source = tmp_path / "source"  # built from a copy: the checkout gets no build/ folder
    shutil.copytree(
        REPO / "reid_search", source / "reid_search", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
          str(source)], tmp_path, dict(os.environ))  # fmt: skip
    wheel = next(wheels.glob("reid_search-*.whl"))
    env_dir = tmp_path / "venv"
    venv.create(env_dir, system_site_packages=True, with_pip=False)
    python = env_dir / "bin" / "python"
    work = tmp_path / "user"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "REID_SEARCH_INDEXES")}
    env.update(REID_SEARCH_HOME=str(work / "home"), PATH=f"{env_dir / 'bin'}:{env['PATH']}")
    _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
        work,
        env,
    )
    where = _run([str(python), "-c", "import reid_search; print(reid_search.__file__)"], work, env).stdout
    assert str(env_dir) in where and str(REPO) not in where  # the wheel's copy, not the checkout
    cli = str(env_dir / "bin" / "reid-search")
    demo = _run([cli, "demo"], work, env).stdout
    assert "rank-1" in demo
    # no detector installed: the first video index fetches it, here from a local mirror serving
    # the card's files over HTTP (this machine has no internet; the product only sees a URL)
    port = _free_port()
    mirror = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=detector_files().parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env["REID_SEARCH_MIRROR"] = f"http://127.0.0.1:{port}"
    _wait_for_port(port)
    video = work / "lobby_cam3.mp4"
    shutil.copyfile(intel_video(), video)
    try:
        built = _run(
            [cli, "index", str(video), "--name", "lobby", "--detect-every", "2", "-q", "--json"], work, env
        )
    finally:
        mirror.terminate()
    assert (work / "home" / "detectors" / DETECTOR / f"{DETECTOR}.card.json").is_file()  # fetched once
    report = json.loads(built.stdout[built.stdout.index("{") :])
    assert report["added"] > 50 and report["videos"][0]["tracklets"] >= 6  # six visits at least
    crops = sorted((work / "indexes" / "lobby" / "crops").rglob("*.jpg"))
    query = crops[len(crops) // 2]  # a crop of the gallery: its own entry must come first
    result = json.loads(_run([cli, "query", str(query), "--index", "lobby", "--json"], work, env).stdout)
    best = result["results"][0]["matches"][0]
    assert (work / best["path"]).resolve() == query.resolve() and best["similarity"] > 0.99
    assert best["extra"]["video"].endswith("lobby_cam3.mp4") and best["camera"] == 3
    found = json.loads(_run([cli, "find", "man, no hat", "--index", "lobby", "--json"], work, env).stdout)
    assert found["results"] and found["results"][0]["attributes"][0]["means"] == "male"  # the wheel's head


def test_every_command_help_names_its_guide_page():
    """Each command's --help ends with the docs page that explains it, and that page exists."""
    import re

    from reid_search.cli import GUIDES

    for command in [*GUIDES, "models fetch"]:
        result = runner.invoke(app, [*command.split(), "--help"], terminal_width=200)
        assert result.exit_code == 0, command
        page = re.search(r"Guide: (\S+\.md)", result.stdout)
        assert page and (REPO / page.group(1)).is_file(), (command, result.stdout[-300:])
