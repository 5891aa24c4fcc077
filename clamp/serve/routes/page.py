"""The offline page and what it loads: the page, its static files, the synth's note sounds."""

# no `from __future__ import annotations`: FastAPI must resolve the Annotated aliases made
# inside register (K, Source, ...), which are not module globals
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response

from clamp.serve import sound
from clamp.serve.context import Context
from clamp.serve.errors import ApiError

STATIC = Path(__file__).resolve().parents[1] / "static"
ABCJS_DIST = STATIC / "node_modules" / "abcjs" / "dist"
# the only files the page may load: fixed paths, never one built from the request
STATIC_FILES = {
    "app.js": (STATIC / "app.js", "text/javascript"),
    "style.css": (STATIC / "style.css", "text/css"),
    "abcjs-basic-min.js": (ABCJS_DIST / "abcjs-basic-min.js", "text/javascript"),
}
# the page loads nothing from elsewhere; abcjs styles its SVG inline
PAGE_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def register(app: FastAPI, ctx: Context) -> None:
    del ctx  # these routes need nothing of it

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(
            STATIC / "index.html",
            media_type="text/html",
            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"},
        )

    @app.get("/static/{name}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        entry = STATIC_FILES.get(name)
        if entry is None:
            raise ApiError(404, "not_found", f"no static file {name[:100]!r}")
        path, media = entry
        if not path.is_file():
            raise ApiError(
                404, "not_found", f"{name} is not installed: run `npm ci` in {STATIC} (infra/bootstrap.sh does)"
            )
        return FileResponse(path, media_type=media, headers={"Cache-Control": "public, max-age=3600"})

    @app.get("/soundfont/{instrument}/{note}", include_in_schema=False)
    async def soundfont(instrument: str, note: str) -> Response:
        name, _, ext = note.rpartition(".")
        midi = sound.midi_number(name)
        if (
            not instrument.endswith("-mp3")
            or ext != "mp3"
            or midi is None
            or not sound.INSTRUMENT.match(instrument[:-4])
        ):
            raise ApiError(404, "not_found", "no such note")
        return Response(
            sound.note_wav(midi), media_type="audio/wav", headers={"Cache-Control": "public, max-age=86400"}
        )
