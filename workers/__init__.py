"""FacePic's Celery workers: ``celery -A workers worker ...`` finds ``workers.app``.

The app is loaded when asked for, not when the package is: the `facepic` console script
(``workers.cli``) starts in this package, and `facepic --help` needs no Celery."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from workers.app import app

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":  # what `celery -A workers` reads
        from workers.app import app

        return app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
