"""The FastAPI application: JSON API under ``/api``, the page at ``/``, OpenAPI docs at ``/docs``.

* ``POST /api/query``    images (one or several = one tracklet) -> ``reid-search/query/v2``
* ``POST /api/compare``  two images -> similarity and verdict
* ``GET /api/galleries``, ``GET /api/health``
* ``GET /api/thumb/{gallery}/{faiss_id}`` and ``GET /api/image/{gallery}/{faiss_id}``: a
  gallery entry's picture, by id only (never by a path from the request)

Safety: uploads are capped in bytes (413) and pixels (400) before anything is decoded; a
bad image is a 400 with the reason; with a token, every ``/api`` call must carry it
(``Authorization: Bearer T``, ``X-Token: T`` or ``?token=T``).
"""

from __future__ import annotations

import hmac
import io
import mimetypes
import re
import shutil
import tempfile
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from .. import __version__
from ..data.images import ImageError
from ..data.metadata import MetadataError, parse_time
from ..embedding.model_store import ModelError
from ..gallery import EntryFilter, GalleryError, read_manifest
from ..search.query import compare_images, search_gallery
from ..search.rerank import RerankConfig
from .config import ServeConfig
from .pool import GalleryPool, UnknownGallery

SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
UPLOAD_CHUNK = 1 << 16


class UploadRejected(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _safe_filename(name: str | None, index: int) -> str:
    """The upload's base name with only safe characters (kept: the same-camera rule reads it)."""
    return SAFE_NAME.sub("_", Path(name or "").name).strip("._") or f"upload{index}.jpg"


async def _save_upload(upload: UploadFile, folder: Path, index: int, config: ServeConfig) -> Path:
    """Write one upload as ``folder/INDEX/NAME`` after checking its size and pixel count."""
    data = bytearray()
    while chunk := await upload.read(UPLOAD_CHUNK):
        data += chunk
        if len(data) > config.max_upload_bytes:
            raise UploadRejected(413, f"{upload.filename}: larger than {config.max_upload_bytes} bytes")
    if not data:
        raise UploadRejected(400, f"{upload.filename}: empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception as exc:  # PIL raises many types for a bad header
        raise UploadRejected(400, f"{upload.filename}: not an image ({type(exc).__name__})") from None
    if width * height > config.max_pixels:
        raise UploadRejected(
            400, f"{upload.filename}: {width}x{height} pixels, more than {config.max_pixels} allowed"
        )
    target = folder / str(index) / _safe_filename(upload.filename, index)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(bytes(data))
    return target


def _clean(message: str, folder: Path) -> str:
    """An error message without the server's temporary folder in it."""
    return re.sub(rf"{re.escape(str(folder))}/\d+/", "", message).replace(str(folder), "")


def create_app(config: ServeConfig) -> FastAPI:
    pool = GalleryPool(config.indexes_dir, config.default_gallery)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        pool.close()

    app = FastAPI(
        title="reid-search",
        version=__version__,
        description="Person re-identification gallery search: who is this, and how sure are we?",
        lifespan=lifespan,
    )
    app.state.pool = pool
    app.state.config = config

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > config.max_request_bytes:
            return JSONResponse({"detail": f"request larger than {config.max_request_bytes} bytes"}, 413)
        return await call_next(request)

    @app.exception_handler(UploadRejected)
    async def rejected(_: Request, exc: UploadRejected):
        return JSONResponse({"detail": str(exc)}, exc.status)

    def check_token(request: Request) -> None:
        if not config.token:
            return
        header = request.headers.get("authorization", "")
        given = (
            header[7:]
            if header.lower().startswith("bearer ")
            else request.headers.get("x-token") or request.query_params.get("token") or ""
        )
        if not hmac.compare_digest(given.encode(), config.token.encode()):
            raise HTTPException(401, "missing or wrong token", headers={"WWW-Authenticate": "Bearer"})

    guarded = [Depends(check_token)]

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return resources.files("reid_search.serve").joinpath("static/index.html").read_text("utf-8")

    @app.get("/api/health", dependencies=guarded)
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "galleries": len(pool.names())}

    @app.get("/api/galleries", dependencies=guarded)
    def galleries() -> list[dict[str, Any]]:
        out = []
        for name in pool.names():
            manifest = read_manifest(pool.indexes_dir / name / "manifest.json")
            with pool.use(name) as handle:
                size = handle.gallery.size
                cameras = [
                    r[0]
                    for r in handle.gallery.con.execute(
                        "select distinct camera from vectors where camera is not null order by camera"
                    )
                ]
            out.append(
                {
                    "name": name,
                    "size": size,
                    "level": manifest["level"],
                    "cameras": cameras,
                    "model": manifest["model"].get("name"),
                    "index": manifest.get("index", {}).get("factory"),
                    "default": name == pool.default,
                }
            )
        return out

    @app.post("/api/query", dependencies=guarded)
    async def query(
        images: Annotated[list[UploadFile], File(description="One image, or several of one person.")],
        gallery: Annotated[str | None, Form()] = None,
        top_k: Annotated[int, Form(ge=1, le=200)] = 10,
        matches: Annotated[int, Form(ge=1, le=50)] = 3,
        camera: Annotated[list[int] | None, Form()] = None,
        exclude_camera: Annotated[list[int] | None, Form()] = None,
        after: Annotated[str | None, Form()] = None,
        before: Annotated[str | None, Form()] = None,
        same_camera_rule: Annotated[bool, Form()] = False,
        rerank: Annotated[bool, Form()] = False,
        min_score: Annotated[float | None, Form()] = None,
    ) -> dict[str, Any]:
        if len(images) > config.max_files:
            raise UploadRejected(413, f"{len(images)} images; at most {config.max_files} per query")
        folder = Path(tempfile.mkdtemp(prefix="reid-query-"))
        try:
            paths = [await _save_upload(u, folder, i, config) for i, u in enumerate(images)]
            where = EntryFilter(
                tuple(camera or ()),
                tuple(exclude_camera or ()),
                parse_time(after) if after else None,
                parse_time(before) if before else None,
            )
            with pool.use(gallery) as handle:
                result = search_gallery(
                    handle.gallery, handle.embedder, paths, top_k, matches, where, same_camera_rule,
                    RerankConfig() if rerank else None, min_score,
                )  # fmt: skip
            payload = result.to_dict()
            payload["query"]["images"] = [Path(p).name for p in payload["query"]["images"]]
            payload["query"]["skipped"] = [_clean(s, folder) for s in payload["query"]["skipped"]]
            return payload
        except UnknownGallery as exc:
            raise HTTPException(404, str(exc)) from None
        except (ImageError, MetadataError, GalleryError, ModelError) as exc:
            raise HTTPException(400, _clean(str(exc), folder)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @app.post("/api/compare", dependencies=guarded)
    async def compare(
        image_a: Annotated[UploadFile, File()],
        image_b: Annotated[UploadFile, File()],
        gallery: Annotated[str | None, Form(description="Use this gallery's model")] = None,
    ) -> dict[str, Any]:
        folder = Path(tempfile.mkdtemp(prefix="reid-compare-"))
        try:
            a = await _save_upload(image_a, folder, 0, config)
            b = await _save_upload(image_b, folder, 1, config)
            with pool.use(gallery) as handle:
                comparison = compare_images(handle.embedder, a, b)
            return {**comparison.to_dict(), "image_a": a.name, "image_b": b.name}
        except UnknownGallery as exc:
            raise HTTPException(404, str(exc)) from None
        except (ImageError, GalleryError, ModelError) as exc:
            raise HTTPException(400, _clean(str(exc), folder)) from None
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def entry_file(gallery: str, faiss_id: int) -> Path:
        try:
            with pool.use(gallery) as handle:
                row = handle.gallery.rows([faiss_id]).get(faiss_id)
        except UnknownGallery as exc:
            raise HTTPException(404, str(exc)) from None
        if row is None:
            raise HTTPException(404, f"no entry {faiss_id} in gallery {gallery!r}")
        path = Path(row["path"])
        if not path.is_file():
            raise HTTPException(404, f"entry {faiss_id}: its image file is no longer on disk")
        return path

    @app.get("/api/thumb/{gallery}/{faiss_id}", dependencies=guarded, response_class=Response)
    def thumb(gallery: str, faiss_id: int) -> Response:
        path = entry_file(gallery, faiss_id)
        data = _thumbnail(str(path), path.stat().st_mtime_ns, config.thumb_height)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @app.get("/api/image/{gallery}/{faiss_id}", dependencies=guarded, response_class=Response)
    def image(gallery: str, faiss_id: int) -> Response:
        path = entry_file(gallery, faiss_id)
        media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return Response(path.read_bytes(), media_type=media)

    return app


@lru_cache(maxsize=2048)
def _thumbnail(path: str, mtime_ns: int, height: int) -> bytes:
    """A JPEG of the image scaled to ``height`` (cached; a changed file gets a new entry)."""
    with Image.open(path) as img:
        rgb = img.convert("RGB")
    width = max(1, round(rgb.width * height / max(1, rgb.height)))
    out = io.BytesIO()
    rgb.resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=85)
    return out.getvalue()
