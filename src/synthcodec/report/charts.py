"""PNG charts in one style: one figure size, dpi and palette, saved atomically.

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so charts work without a
display and never change the global backend of a notebook that imported us. matplotlib is
imported only when a chart is drawn. Text is drawn as written: charts show user text
(categories, benchmark and model names), where a `$...$` must not be parsed as mathtext.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

from synthcodec.store import atomic_writer

__all__ = ["CARD", "COLORS", "DPI", "SIZE", "new_figure", "png_bytes", "save"]

SIZE = (7.0, 4.0)  # inches; a chart of several panels widens it
CARD = (5.2, 3.0)  # a chart among several on a page (the viewer)
DPI = 100
COLORS = {
    "bar": "tab:blue",     # plain counts (score histograms)
    "count": "tab:purple",  # a second kind of count (kept per iteration)
    "tokens": "tab:orange",  # usage
    "muted": "tab:gray",   # "nothing yet" notes
    "keep": "tab:green",   # bars that pass a threshold (kept rows, |gap| > theta)
    "other": "tab:gray",   # bars that do not
    "mark": "tab:red",     # threshold lines
    "win": "tab:green",
    "tie": "tab:gray",
    "lose": "tab:red",
}


def new_figure(*, panels: int = 1, size: tuple[float, float] | None = None,
               sharey: bool = False) -> tuple[Any, list[Any]]:
    """(figure, axes): `panels` side by side, each SIZE wide unless `size` is given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig = _literal_figure()(figsize=size or (SIZE[0] * panels, SIZE[1]), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, sharey=sharey, squeeze=False)[0]
    return fig, list(axes)


@functools.cache
def _literal_figure() -> type:
    """A Figure whose every text is drawn literally (no mathtext), however it was added:
    each text's `parse_math` is switched off whenever the figure is laid out or drawn, and
    texts matplotlib makes then (tick labels) are made with it off."""
    import matplotlib as mpl
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    def literal(method: Any) -> Any:
        @functools.wraps(method)
        def wrapped(self: Any, *args: Any, **kwargs: Any) -> Any:
            with mpl.rc_context({"text.parse_math": False}):
                for text in self.findobj(Text):
                    text.set_parse_math(False)
                return method(self, *args, **kwargs)
        return wrapped

    return type("LiteralTextFigure", (Figure,), {"draw": literal(Figure.draw),
                                                 "tight_layout": literal(Figure.tight_layout)})


def png_bytes(fig: Any) -> bytes:
    """The figure as PNG bytes (laid out tightly), for a page or an upload."""
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def save(fig: Any, path: str | Path) -> Path:
    """Write the figure as PNG atomically (a reader never sees half a PNG)."""
    target = Path(path)
    with atomic_writer(target, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI)
    return target
