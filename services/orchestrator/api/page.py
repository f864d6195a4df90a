"""The browser page at `/`: paste a URL, watch the transcript stream in.

    GET /                      index.html
    GET /static/{app.js,style.css}
    GET /static/languages.json Whisper's language codes and names, for the language picker

Plain files, no build step: `app.js` posts to `/v1/transcribe/stream` with `fetch` (EventSource
cannot POST), parses the Server-Sent Events itself and renders them as they arrive.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from shared.languages import LANGUAGE_NAMES

STATIC_DIR = Path(__file__).parent / "static"

_ASSETS = {"app.js": "text/javascript", "style.css": "text/css"}

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single-page UI (plain HTML + JavaScript, no build step)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")


@router.get("/static/languages.json", include_in_schema=False)
async def languages() -> dict[str, str]:
    """Language code to English name, from the same table the services validate against."""
    return LANGUAGE_NAMES


@router.get("/static/{name}", include_in_schema=False)
async def asset(name: str) -> FileResponse:
    """The page's script and stylesheet (a fixed list: nothing else under static/ is served)."""
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise HTTPException(status_code=404, detail=f"no asset {name!r}")
    return FileResponse(STATIC_DIR / name, media_type=media_type)
