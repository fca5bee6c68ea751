"""Figure look, text and saving: one style for every figure the project draws.

Lines differ by colour *and* by line style, so a figure reads in
greyscale and for colour-blind readers; the palette is the dark part of the
Okabe-Ito/seaborn colour-blind palette (no pale colour a diverging series could
get). User text is shown literally. Figures are written as PNG at `DPI` and SVG
(and PDF where asked) by `save_figure` and `figure_bytes`.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cycler import cycler
from matplotlib.category import StrCategoryFormatter
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.ticker import FixedFormatter, Formatter, FuncFormatter

FORMATS = ("png", "svg")
"""Formats every figure is written in."""
PAPER_FORMATS = (*FORMATS, "pdf")
"""Formats of the figures made for a paper (Kolter's figure, stability maps)."""
DPI = 200
"""Resolution of every PNG the project writes."""
PALETTE = (
    "#0173B2",
    "#DE8F05",
    "#029E73",
    "#D55E00",
    "#CC78BC",
    "#CA9161",
    "#56B4E9",
    "#949494",
)
"""Series colours in the order lines get them: seaborn's colour-blind palette, no pale ones."""
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (1, 2)), (0, (8, 3)))
STYLE: dict[str, Any] = {
    "axes.prop_cycle": cycler(color=PALETTE) + cycler(linestyle=LINESTYLES),
    "savefig.dpi": DPI,
}
"""The rc settings every figure is drawn under: ``with plt.style.context(STYLE)``."""


def series_style(index: int) -> dict[str, Any]:
    """The colour and line style of the ``index``-th series of a figure drawn by hand.

    The first ``len(PALETTE)`` series follow `STYLE`'s cycle; later ones shift the line
    style, so no two of the first ``len(PALETTE) ** 2`` series share a (colour, line style).
    """
    count = len(PALETTE)
    return {
        "color": PALETTE[index % count],
        "linestyle": LINESTYLES[(index + index // count) % len(LINESTYLES)],
    }


def plain(text: object) -> str:
    """``text`` as matplotlib must get it to show it literally: every ``$`` escaped.

    A pair of dollar signs starts matplotlib's math text, which garbles a grid
    value such as ``cost $5 and $x^2$`` and fails to draw one such as ``$$``.
    Apply it once, where user text (labels, names, grid values) reaches matplotlib.
    """
    return str(text).replace("$", r"\$")


def keep_plain(figure: Figure) -> None:
    """Show the text of a figure another library drew (Optuna's plots) literally.

    Every text stops being parsed as math except numeric tick labels, which keep
    matplotlib's own math (offsets, powers of ten); tick labels given as text
    (parameter names, categorical choices: a category, fixed or function
    formatter, which is what ``set_ticklabels`` installs) are escaped as they
    are formatted.
    """
    formatted: set[int] = set()
    """Tick labels, whose text their formatter writes at each draw."""
    escaping: dict[int, FuncFormatter] = {}
    """Each text formatter's escaping wrapper: shared axes share one formatter."""
    for axis in figure.axes:
        for ruler in (axis.xaxis, axis.yaxis):
            formatter = ruler.get_major_formatter()
            text_formatter = isinstance(
                formatter, StrCategoryFormatter | FixedFormatter | FuncFormatter
            )
            if text_formatter and formatter not in escaping.values():
                if id(formatter) not in escaping:
                    escaping[id(formatter)] = FuncFormatter(_escaping(formatter))
                ruler.set_major_formatter(escaping[id(formatter)])
            ticks = ruler.get_major_ticks() + ruler.get_minor_ticks()
            formatted.update(id(text) for tick in ticks for text in (tick.label1, tick.label2))
            formatted.add(id(ruler.offsetText))
    for text in figure.findobj(Text):
        if id(text) not in formatted:
            text.set_parse_math(False)


def _escaping(formatter: Formatter) -> Callable[[float, int | None], str]:
    def format_plain(value: float, position: int | None) -> str:
        return plain(formatter(value, position))

    return format_plain


def figure_bytes(figure: Figure, extension: str, dpi: int = DPI) -> bytes:
    """``figure`` encoded as ``extension`` (png, svg, pdf), cropped to what it draws."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=extension, dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


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
        path.write_bytes(figure_bytes(figure, extension, dpi))
        written.append(path)
    return written


def save_figures(
    figures: Mapping[str, Figure],
    directory: Path | str,
    formats: Sequence[str] = FORMATS,
    dpi: int = DPI,
) -> dict[str, list[Path]]:
    """`save_figure` each named figure as ``directory/<name>.<format>``; the files by name."""
    return {
        name: save_figure(figure, Path(directory) / name, formats, dpi)
        for name, figure in figures.items()
    }
