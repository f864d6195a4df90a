"""The browser page at `/`: paste a URL, watch the transcript stream in."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).parent / "static"

router = APIRouter(tags=["page"])


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    """The single-page UI (plain HTML + JavaScript, no build step)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html")
