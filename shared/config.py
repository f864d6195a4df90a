"""Helpers the services' Settings classes share."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from shared.media_host import AddressPolicy

S = TypeVar("S", bound=BaseSettings)


def from_environment(settings: type[S]) -> S:
    """A service's settings from its environment. A bad value ends the process with one line
    per variable, named as it is set (`WHISPER_BEAM_SIZE: Input should be ...`), instead of a
    traceback that names a field the user never typed."""
    try:
        return settings()
    except ValidationError as exc:
        raise SystemExit(configuration_errors(settings, exc)) from None


def configuration_errors(settings: type[BaseSettings], exc: ValidationError) -> str:
    prefix = str(settings.model_config.get("env_prefix", ""))
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        variable = (prefix + field).upper() if field else settings.__name__
        message = str(error["msg"]).removeprefix("Value error, ")
        value = os.environ.get(variable)
        info = settings.model_fields.get(field)
        hidden = info is not None and not info.repr  # secrets, keys, a database URL's password
        shown = "" if value is None or hidden else f" {value!r}"
        lines.append(f"  {variable}{shown}: {message}")
    return "invalid configuration, nothing started:\n" + "\n".join(lines)


def readable_file(value: Any) -> Any:
    """A path that must name a file this process can read (a mounted secret, a key list)."""
    if value is None:
        return value
    path = Path(value)
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"can't read {path}: {exc.strerror or exc}") from None
    return value


def executable(value: Any) -> Any:
    """A program: an existing executable path, or a name found on PATH."""
    if value is None or value == "":
        return None
    if shutil.which(str(value)) is None:
        raise ValueError(f"{value!r} is not an executable file (nor a program on PATH)")
    return value


def split_list(value: Any) -> Any:
    """Accept `a,b,c` (what an environment variable holds) as well as a list."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def split_urls(value: Any) -> Any:
    """Accept `a,b,c` (what an environment variable holds) as well as a list."""
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        if not value:
            raise ValueError("give at least one base URL")
        for url in value:
            if not str(url).startswith(("http://", "https://")):
                raise ValueError(f"{url!r} is not an http(s) base URL")
        return [str(url).rstrip("/") for url in value]
    return value


def empty_is_unset(value: Any) -> Any:
    """`VAR=` (what Compose passes for an unset `${VAR:-}`) means not set."""
    return None if value == "" else value


def networks(value: Any) -> list[str]:
    """CIDRs, `a,b` or a list (`10.0.0.0/8,::1`), as normalised network strings."""
    items = value.split(",") if isinstance(value, str) else list(value or [])
    try:
        return AddressPolicy.parse(str(item) for item in items).networks
    except ValueError as exc:
        raise ValueError(f"not a CIDR network list ({exc}), e.g. 10.0.0.0/8,::1") from None
