"""Figure text and saving: user text shown literally; figures in raster and vector formats."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.figure import Figure

FORMATS = ("png", "svg")
DPI = 150


def plain(text: object) -> str:
    """``text`` as matplotlib must get it to show it literally: every ``$`` escaped.

    A pair of dollar signs starts matplotlib's math text, which garbles a grid
    value such as ``cost $5 and $x^2$`` and fails to draw one such as ``$$``.
    Apply it once, where user text (labels, names, grid values) reaches matplotlib.
    """
    return str(text).replace("$", r"\$")


def save_figure(
    figure: Figure, path_stem: Path | str, formats: Sequence[str] = FORMATS, dpi: int = DPI
) -> list[Path]:
    """Write ``figure`` as ``<path_stem>.<format>`` for each format; returns the files written.

    Parent directories are created. The stem must not carry a suffix of its own
    (``figures/triad_cube``, not ``figures/triad_cube.png``).
    """
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for extension in formats:
        path = stem.with_name(f"{stem.name}.{extension}")
        figure.savefig(path, format=extension, dpi=dpi, bbox_inches="tight")
        written.append(path)
    return written


def save_figures(
    figures: Mapping[str, Figure], directory: Path | str, formats: Sequence[str] = FORMATS
) -> dict[str, list[Path]]:
    """`save_figure` each named figure as ``directory/<name>.<format>``; the files by name."""
    return {
        name: save_figure(figure, Path(directory) / name, formats)
        for name, figure in figures.items()
    }
