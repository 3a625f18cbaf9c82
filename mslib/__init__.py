"""mslib: multi-scale medical image segmentation, step by step (the package behind the book).

Subpackages (see ARCHITECTURE.md for the layers): :mod:`mslib.blocks` (building blocks),
:mod:`mslib.losses`, :mod:`mslib.metrics`, :mod:`mslib.models`, :mod:`mslib.data`,
:mod:`mslib.recipes` (model + loss + transforms + metrics from a config), :mod:`mslib.train`
(the engine). Import what you need, e.g. ``from mslib.blocks import MultiScaleSubtractionUnit``;
``import mslib`` itself stays light.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mslib")  # the one source: pyproject.toml's [project] version
except PackageNotFoundError:  # pragma: no cover - a source tree on sys.path without `pip install`
    __version__ = "0+unknown"

__all__ = ["__version__"]
