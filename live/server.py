"""The stream's HTTP server (aiohttp, on its own thread and event loop).

Viewing needs nothing: the player page, hls.js, the playlist and the segments. Control
(`POST /prompt`, `GET /status`) needs the token printed at start. Only names an HLS sink
writes are served from the stream folder: no temp file, report, workdir, symlink or
anything outside (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.errors import InputError

WEB = Path(__file__).parent / "web"
HLSJS_ENV = "LVP_HLSJS"  # a path to hls.min.js, if not installed with npm in live/web
HLSJS_HINT = "npm install --prefix live/web  (or set $LVP_HLSJS to an hls.min.js file)"
PLAYLIST = "stream.m3u8"
# stream.m3u8, `lvp render --hls` segments, `lvp stream` segments (stitcher.playlist.LiveHLS)
MEDIA_NAMES = re.compile(r"stream\.m3u8|seg_\d{5,}\.ts|live_(?:[A-Za-z0-9]+_)?\d{6,}\.ts")
MAX_BODY = 16 * 1024
CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag"}


def find_hlsjs() -> Path | None:
    candidates = [os.environ.get(HLSJS_ENV, ""),
                  WEB / "node_modules" / "hls.js" / "dist" / "hls.min.js"]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _regular_file(folder: Path, name: str) -> Path | None:
    """folder/name if it is a plain file right there (no symlink, nothing hidden)."""
    if not MEDIA_NAMES.fullmatch(name):
        return None
    path = folder / name
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return path if stat.S_ISREG(info.st_mode) else None


class LiveServer:
    """Serves `folder` and the player page on host:port until `stop`.

    `steer(text)` applies a prompt change and returns warnings (raises InputError for a bad
    prompt); `status()` is the JSON of GET /status; `metrics()` the Prometheus text of
    /metrics. Without `steer`, POST /prompt answers 404 (a plain `--serve DIR`).
    """

    def __init__(self, folder: Path, host: str, port: int, token: str,
                 steer: Callable[[str], list[str]] | None = None,
                 status: Callable[[], dict[str, Any]] | None = None,
                 metrics: Callable[[], bytes] | None = None) -> None:
        self.folder = Path(folder)
        self.host, self.port, self.token = host, port, token
        self._steer, self._status, self._metrics = steer, status, metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    # lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="lvp-live-http", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            loop.stop()

        asyncio.run_coroutine_threadsafe(shutdown(), loop)
        self._thread.join(10)
        self._loop = None

    def _serve(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            self._runner = web.AppRunner(self._app(), access_log=None)
            loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, self.host, self.port)
            loop.run_until_complete(site.start())
        except BaseException as exc:  # noqa: BLE001 - handed to start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        loop.close()

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_get("/", self._page)
        app.router.add_get("/hls.min.js", self._hlsjs)
        app.router.add_post("/prompt", self._prompt)
        app.router.add_get("/status", self._status_view)
        app.router.add_get("/metrics", self._metrics_view)
        app.router.add_route("OPTIONS", "/{name}", self._preflight)
        app.router.add_get("/{name}", self._media)
        return app

    # viewing
    async def _page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB / "index.html", headers={"Cache-Control": "no-cache"})

    async def _hlsjs(self, request: web.Request) -> web.StreamResponse:
        path = find_hlsjs()
        if path is None:
            return web.Response(status=404, text=f"hls.js is not installed: {HLSJS_HINT}\n")
        return web.FileResponse(path, headers={"Content-Type": "text/javascript",
                                               "Cache-Control": "public, max-age=3600"})

    async def _preflight(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204, headers={**CORS, "Access-Control-Allow-Methods": "GET",
                                                 "Access-Control-Max-Age": "600"})

    async def _media(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = _regular_file(self.folder, name)
        if path is None:
            raise web.HTTPNotFound(text="not found\n")
        if name == PLAYLIST:
            return self._playlist(request, path)
        return web.FileResponse(path, headers={
            **CORS, "Content-Type": "video/mp2t",
            # Names are never reused within a run, and a live run's carry its own id.
            "Cache-Control": "public, max-age=86400, immutable"})

    def _playlist(self, request: web.Request, path: Path) -> web.Response:
        """The playlist changes several times a second: no Last-Modified (one-second
        resolution, so a revalidation could get 304 for a newer file), a strong ETag of the
        content, and no-cache so every load revalidates."""
        try:
            body = path.read_bytes()  # the sink replaces it atomically: always one whole file
        except OSError:
            raise web.HTTPNotFound(text="not found\n") from None
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {**CORS, "ETag": etag, "Cache-Control": "no-cache",
                   "Content-Type": "application/vnd.apple.mpegurl"}
        if etag in [t.strip() for t in request.headers.get("If-None-Match", "").split(",")]:
            return web.Response(status=304, headers=headers)
        return web.Response(body=body, headers=headers)

    # control
    def _authorized(self, request: web.Request) -> bool:
        given = request.headers.get("Authorization", "")
        if given.startswith("Bearer "):
            given = given[len("Bearer "):]
        else:
            given = request.headers.get("X-LVP-Token", "")
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def _refuse(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return web.json_response({"error": "a valid token is required (Authorization: "
                                               "Bearer TOKEN, printed by lvp stream)"},
                                     status=401, headers={"WWW-Authenticate": "Bearer"})
        return None

    async def _prompt(self, request: web.Request) -> web.Response:
        if self._steer is None:
            raise web.HTTPNotFound(text="this server only plays a stream\n")
        refused = self._refuse(request)
        if refused is not None:
            return refused
        try:
            payload = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": f"request body over {MAX_BODY} bytes"}, status=413)
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": 'the body must be JSON: {"prompt": "..."}'},
                                     status=400)
        text = payload.get("prompt") if isinstance(payload, dict) else None
        if not isinstance(text, str):
            return web.json_response({"error": 'the body must be JSON: {"prompt": "..."}'},
                                     status=400)
        try:
            warnings = await asyncio.get_running_loop().run_in_executor(None, self._steer, text)
        except InputError as exc:
            return web.json_response({"error": str(exc)}, status=422)
        return web.json_response({"accepted": True, "prompt": text, "warnings": warnings},
                                 status=202)

    async def _status_view(self, request: web.Request) -> web.Response:
        refused = self._refuse(request)
        if refused is not None:
            return refused
        return web.json_response(self._status() if self._status else {},
                                 headers={"Cache-Control": "no-store"})

    async def _metrics_view(self, request: web.Request) -> web.Response:
        if self._metrics is None:
            raise web.HTTPNotFound()
        return web.Response(body=self._metrics(), content_type="text/plain")
