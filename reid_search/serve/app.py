"""The FastAPI application: JSON API under ``/api``, the page at ``/``, OpenAPI docs at ``/docs``.

* ``POST /api/query``    images (one or several = one tracklet) -> ``reid-search/query/v2``
* ``POST /api/find``     a description -> ``reid-search/query/v2`` (answers by attributes)
* ``POST /api/trace``    images -> the person's visits; ``POST /api/trace/bundle`` -> its evidence zip
* ``POST /api/compare``  two images -> similarity and verdict
* ``GET /api/galleries``, ``GET /api/health``
* ``GET /api/thumb/{gallery}/{faiss_id}`` and ``GET /api/image/{gallery}/{faiss_id}``: a
  gallery entry's picture, by id only (never by a path from the request), and only while
  it is still the indexed file inside the indexed folder

The event loop never decodes, embeds or searches: uploads are read asynchronously,
decoding and searching run in worker threads, and each gallery's model runs on its own
thread, embedding the images of concurrent requests together
(:mod:`~reid_search.serve.batcher`). Budgets (:mod:`.guard`, :mod:`.uploads`): token
before body, body bytes (chunked too), slow-client timeout, bytes / pixels per image,
pixels per request, images per request, a capped re-ranking shortlist. Every refusal is
a 4xx with a short reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tempfile
import threading
from collections import OrderedDict
from contextlib import asynccontextmanager
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from PIL import Image

from .. import __version__
from ..attributes.vocabulary import parse_description
from ..embedding.embedder import pool_tracklet
from ..errors import ReidSearchError
from ..gallery import EntryFilter, read_manifest
from ..gallery.entry_files import EntryFile, EntryUnavailable, entry_image
from ..journeys.trace import camera_pair, trace_vector
from ..search.compare import Comparison
from ..search.find import FindOptions, find_by_description
from ..search.query import QueryOptions, answer_vector
from ..video.decode import VideoError
from ..video.served_frames import Busy, FrameRequest, FrameServer
from .config import ServeConfig
from .guard import GuardConfig, RequestGuard
from .pool import GalleryPool, Handle
from .uploads import UploadBudget, UploadRejected, check_request, check_upload, decode_uploads, safe_filename

MAX_MESSAGE = 300  # characters of an error message sent back


GalleryField = Annotated[str | None, Form(max_length=200)]
TopK = Annotated[int, Form(ge=1, le=200)]
MatchesField = Annotated[int, Form(ge=1, le=50)]
Cameras = Annotated[list[int] | None, Form()]
TimeBound = Annotated[str | None, Form(max_length=64)]
TraceImages = Annotated[list[UploadFile], File(description="One image, or several of one person.")]
Overlapping = Annotated[list[str] | None, Form(description="Pairs of cameras that see one place, e.g. 1,2")]
GapSeconds = Annotated[float, Form(ge=0, le=86400)]
MinScore = Annotated[float | None, Form(ge=-1, le=1)]


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."


async def _read_uploads(files: list[UploadFile], budget: UploadBudget):
    """Read (asynchronously) and check every upload, then the request's pixel budget."""
    if len(files) > budget.max_files:
        raise UploadRejected(413, f"{len(files)} images; at most {budget.max_files} per request")
    uploads = []
    for i, upload in enumerate(files):
        name = safe_filename(upload.filename, i)
        data = await upload.read(budget.max_image_bytes + 1)
        uploads.append(await run_in_threadpool(check_upload, data, name, budget))
    check_request(uploads, budget)
    return uploads


def create_app(config: ServeConfig) -> FastAPI:
    pool = GalleryPool(config.indexes_dir, config.default_gallery, config.batch_images)
    budget = config.upload_budget
    decode_slots = asyncio.Semaphore(config.decode_slots)
    frames = FrameServer()

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        pool.close()

    app = FastAPI(
        title="reid-search",
        version=__version__,
        description="Person re-identification gallery search: who is this, and how sure are we?",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads from a CDN: /docs is our own offline page instead
        redoc_url=None,
    )
    app.state.pool = pool
    app.state.config = config
    app.add_middleware(
        RequestGuard,
        config=GuardConfig(
            config.token,
            config.max_request_bytes,
            config.body_timeout,
            config.allowed_hosts,
            max_parts=config.max_files + 16,
        ),  # fmt: skip
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError):
        """A 422 that names the fields and what is wrong, never echoing what was sent."""
        errors = [f"{'.'.join(str(p) for p in e.get('loc', ())[1:]) or 'request'}: {e.get('msg', '')}"
                  for e in exc.errors()]  # fmt: skip
        return JSONResponse({"detail": _short("; ".join(errors))}, 422)

    app.add_exception_handler(ReidSearchError, _project_error)  # every project error: one JSON shape

    async def embed(handle: Handle, uploads) -> tuple[Any, list[str], list[str]]:
        """Decode (a worker thread, at most ``decode_slots`` requests at once), then embed in the
        gallery model's shared batches: (vectors, names used, failures)."""
        embedder = await run_in_threadpool(lambda: handle.embedder)
        async with decode_slots:
            pixels, used, failures = await run_in_threadpool(decode_uploads, uploads, embedder.input_size)
        if not used:
            raise UploadRejected(400, "no readable image: " + "; ".join(failures))
        vectors = await handle.batcher.embed_async(pixels)
        return vectors, used, failures

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return _static("index.html")

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    async def docs() -> str:
        return _static("docs.html")

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "galleries": len(pool.names())}

    @app.get("/api/galleries")
    def galleries() -> list[dict[str, Any]]:
        return [_describe(pool, name) for name in pool.names()]

    @app.post("/api/query")
    async def query(
        images: Annotated[list[UploadFile], File(description="One image, or several of one person.")],
        gallery: GalleryField = None,
        top_k: TopK = 10,
        matches: MatchesField = 3,
        camera: Cameras = None,
        exclude_camera: Cameras = None,
        after: TimeBound = None,
        before: TimeBound = None,
        same_camera_rule: Annotated[bool, Form()] = False,
        rerank: Annotated[bool, Form()] = False,
        min_score: Annotated[float | None, Form()] = None,
        where: Annotated[str | None, Form(max_length=500, description="Only entries fitting this")] = None,
        where_min: Annotated[float, Form(ge=0, le=1)] = 0.5,
        by: Annotated[str, Form(max_length=16, description="auto, or identity")] = "auto",
    ) -> dict[str, Any]:
        options = QueryOptions(
            top_k, matches, tuple(camera or ()), tuple(exclude_camera or ()), after, before,
            same_camera_rule, rerank, min_score, where or None, where_min, by,
        )  # fmt: skip
        uploads = await _read_uploads(images, budget)
        handle = await run_in_threadpool(pool.handle, gallery)
        vectors, used, failures = await embed(handle, uploads)
        card = handle.embedder.card

        def search():
            query_vector = pool_tracklet(vectors)
            with handle.lock:
                return answer_vector(handle.gallery, query_vector, used, failures, card, options)

        return (await run_in_threadpool(search)).to_dict()

    async def journey_of(images, gallery, overlapping_cameras, gap_seconds, min_score, by="auto"):
        """The traced journey of uploaded crops (``reid-search trace``) and the uploads."""
        pairs = [camera_pair(text) for text in overlapping_cameras or []]
        uploads = await _read_uploads(images, budget)
        handle = await run_in_threadpool(pool.handle, gallery)
        vectors, used, _ = await embed(handle, uploads)
        card = handle.embedder.card

        def journey():
            with handle.lock:
                return trace_vector(
                    handle.gallery, pool_tracklet(vectors), used, card, pairs, gap_seconds, min_score, by=by
                )

        return await run_in_threadpool(journey), uploads

    @app.post("/api/trace")
    async def trace(
        images: TraceImages,
        gallery: GalleryField = None,
        overlapping_cameras: Overlapping = None,
        gap_seconds: GapSeconds = 10.0,
        min_score: MinScore = None,
        by: Annotated[str, Form(max_length=16, description="auto, query or identity")] = "auto",
    ) -> dict[str, Any]:
        """The person's visits across the gallery's cameras in time order (``reid-search trace``)."""
        journey, _ = await journey_of(images, gallery, overlapping_cameras, gap_seconds, min_score, by)
        return journey.to_dict()

    @app.post("/api/trace/bundle", response_class=Response)
    async def trace_bundle(
        images: TraceImages,
        gallery: GalleryField = None,
        overlapping_cameras: Overlapping = None,
        gap_seconds: GapSeconds = 10.0,
        min_score: MinScore = None,
    ) -> Response:
        """The journey's evidence bundle (``trace --bundle``): a zip to verify with ``verify-bundle``."""
        journey, uploads = await journey_of(images, gallery, overlapping_cameras, gap_seconds, min_score)
        data = await run_in_threadpool(bundle_bytes, journey, uploads)
        disposition = f'attachment; filename="journey-{journey.gallery}.zip"'
        return Response(data, media_type="application/zip", headers={"Content-Disposition": disposition})

    @app.post("/api/find")
    async def find(
        description: Annotated[str, Form(max_length=500, description="e.g. woman, red top, backpack")],
        gallery: GalleryField = None,
        top_k: TopK = 10,
        matches: MatchesField = 3,
        camera: Cameras = None,
        exclude_camera: Cameras = None,
        after: TimeBound = None,
        before: TimeBound = None,
        by: Annotated[str, Form(max_length=16)] = "auto",
    ) -> dict[str, Any]:
        """People fitting a description, no image (``reid-search find``; ``query``'s JSON shape)."""
        where = EntryFilter.parse(camera or (), exclude_camera or (), after, before)
        options = FindOptions(top_k, matches, where, by)
        parse_description(description)  # a bad description is refused before any gallery is opened
        handle = await run_in_threadpool(pool.handle, gallery)

        def search():
            with handle.lock:
                return find_by_description(handle.gallery, description, options)

        return (await run_in_threadpool(search)).to_dict()

    @app.post("/api/compare")
    async def compare(
        image_a: Annotated[UploadFile, File()],
        image_b: Annotated[UploadFile, File()],
        gallery: Annotated[str | None, Form(description="Use this gallery's model", max_length=200)] = None,
    ) -> dict[str, Any]:
        uploads = await _read_uploads([image_a, image_b], budget)
        handle = await run_in_threadpool(pool.handle, gallery)
        vectors, used, failures = await embed(handle, uploads)
        if failures:
            raise UploadRejected(400, failures[0])
        card = handle.embedder.card
        comparison = Comparison(used[0], used[1], float(vectors[0] @ vectors[1]), card.threshold, card.name)
        return comparison.to_dict()

    def entry_file(gallery: str, faiss_id: int) -> EntryFile:
        if not 0 <= faiss_id < 2**63:
            raise HTTPException(404, "no such entry")
        with pool.use(gallery) as handle:
            return entry_image(handle.gallery, faiss_id)

    @app.get("/api/thumb/{gallery}/{faiss_id}", response_class=Response)
    def thumb(gallery: str, faiss_id: int) -> Response:
        entry = entry_file(gallery, faiss_id)
        try:
            data = _thumbnail(entry.data, config.thumb_height)
        except Exception:  # the indexed image can no longer be decoded
            raise EntryUnavailable(f"entry {faiss_id}: its file is no longer a readable image") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=300"})

    @app.get("/api/image/{gallery}/{faiss_id}", response_class=Response)
    def image(gallery: str, faiss_id: int) -> Response:
        """The indexed image, as the image type its content has (never HTML or anything else)."""
        entry = entry_file(gallery, faiss_id)
        extension = entry.media_type.split("/")[-1].replace("jpeg", "jpg")
        disposition = f'inline; filename="entry-{faiss_id}.{extension}"'
        return Response(entry.data, media_type=entry.media_type, headers={"Content-Disposition": disposition})

    @app.get("/api/frame/{gallery}/{faiss_id}", response_class=Response)
    def frame(gallery: str, faiss_id: int) -> Response:
        """The video frame a match was cut from, its box drawn (entries cut from video only)."""
        if not 0 <= faiss_id < 2**63:
            raise HTTPException(404, "no such entry")
        with pool.use(gallery) as handle:
            entry_image(handle.gallery, faiss_id)  # an entry (else 404) whose crop is still the indexed one
            where = handle.gallery.video_source(faiss_id)
        request = FrameRequest(
            where["video"], where.get("video_size"), where.get("video_sha256"),
            where["frame"], where.get("video_time"), where["box"], where["label"],
        )  # fmt: skip
        try:
            return Response(frames.jpeg(request), media_type="image/jpeg")
        except Busy:
            raise  # 503 with Retry-After (the project error handler)
        except VideoError as exc:  # the video is gone or changed: the entry's frame is unavailable
            raise EntryUnavailable(f"entry {faiss_id}: {exc}") from None

    return app


def app_from_environment() -> FastAPI:
    """The application of a worker process (``serve --workers N``): settings from the environment."""
    import os

    from .config import CONFIG_ENV

    return create_app(ServeConfig.from_json(os.environ[CONFIG_ENV]))


async def _project_error(_: Request, exc: Exception):
    """A project error as ``{"detail": one line}`` with its class's status (400 unless it says)."""
    status = int(getattr(exc, "http_status", 400))
    headers = {"Retry-After": "2"} if status == 503 else None
    return JSONResponse({"detail": _short(str(exc))}, status, headers=headers)


def bundle_bytes(journey, uploads) -> bytes:
    """The bytes of ``journey``'s evidence bundle, its query images the uploads themselves."""
    from ..journeys.bundle import write_bundle

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "query"
        folder.mkdir()
        for n, upload in enumerate(uploads):
            (folder / f"{n:02d}-{upload.name}").write_bytes(upload.data)
        journey.images = [str(folder / f"{n:02d}-{u.name}") for n, u in enumerate(uploads)]
        out = Path(tmp) / "journey.zip"
        write_bundle(journey, out)
        return out.read_bytes()


def _describe(pool: GalleryPool, name: str) -> dict[str, Any]:
    """A gallery as the page lists it; a broken one is listed as unavailable, with why."""
    try:
        manifest = read_manifest(pool.indexes_dir / name / "manifest.json")
        with pool.use(name) as handle:
            size, cameras = handle.gallery.size, handle.gallery.cameras()
            attributes = handle.gallery.attribute_info() is not None
        return {
            "name": name,
            "available": True,
            "size": size,
            "level": manifest["level"],
            "cameras": cameras,
            "model": manifest["model"].get("name"),
            "index": manifest.get("index", {}).get("factory"),
            "default": name == pool.default,
            "attributes": attributes,
        }
    except Exception as exc:  # any broken gallery: listed, never a 500 for everyone
        return {"name": name, "available": False, "error": _short(f"{type(exc).__name__}: {exc}")}


@lru_cache(maxsize=4)
def _static(name: str) -> str:
    return resources.files("reid_search.serve").joinpath(f"static/{name}").read_text("utf-8")


_THUMBS: OrderedDict[tuple[str, int], bytes] = OrderedDict()  # (sha256 of the image, height) -> JPEG
_THUMBS_KEPT = 2048
_THUMBS_LOCK = threading.Lock()  # thumbnails are drawn in the server's worker threads


def _thumbnail(data: bytes, height: int) -> bytes:
    """A JPEG of the image's bytes scaled to ``height``; the last few thousand are kept, keyed by
    the bytes' SHA-256 (never by a file's name, size or time)."""
    key = (hashlib.sha256(data).hexdigest(), height)
    with _THUMBS_LOCK:
        if key in _THUMBS:
            _THUMBS.move_to_end(key)
            return _THUMBS[key]
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (height * 4, height))
        rgb = img.convert("RGB")
    width = max(1, round(rgb.width * height / max(1, rgb.height)))
    out = io.BytesIO()
    rgb.resize((width, height), Image.Resampling.BILINEAR).save(out, "JPEG", quality=85)
    with _THUMBS_LOCK:
        _THUMBS[key] = out.getvalue()
        while len(_THUMBS) > _THUMBS_KEPT:
            _THUMBS.popitem(last=False)
    return out.getvalue()
