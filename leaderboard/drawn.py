"""What a figure draws, as data: every axes' titles, labels, limits, explicit tick labels, lines, markers,
colour meshes, patches, texts and legend entries, in data coordinates, rounded. Saved beside each PNG as
``<name>.json`` with the matplotlib version that drew it.

``wmbench leaderboard --check`` compares this record, not the PNG's bytes, whenever the installed matplotlib
differs from the one that drew the published figure: a matplotlib release changes anti-aliasing and font
hinting (every byte of a PNG) but not what is drawn, so CI keeps checking the figures' content without
pinning matplotlib. With the same version the PNGs are also compared byte for byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["drawn", "dumps", "save_figure", "sidecar", "read_sidecar"]

DIGITS = 6


def _num(x: Any) -> Any:
    x = float(x)
    return None if math.isnan(x) else (x if math.isinf(x) else round(x, DIGITS))


def _nums(values) -> list:
    import numpy as np

    arr = np.ma.filled(np.ma.asarray(values, dtype=float), np.nan)
    return [_num(v) for v in arr.ravel()]


def _colours(values) -> list[str]:
    from matplotlib.colors import to_hex

    return [to_hex(c, keep_alpha=True) for c in values]


def _colour(value) -> str | None:
    from matplotlib.colors import to_hex

    try:
        return to_hex(value, keep_alpha=True)
    except (ValueError, TypeError):
        return None


def _label(artist) -> str | None:
    """An artist's legend label; matplotlib's own placeholders (``_child3``) are not content."""
    label = artist.get_label()
    return None if not label or label.startswith("_") else label


def _ticks(axis) -> list[str] | None:
    """Tick labels at ticks the code placed itself (category names, sweep points); ticks that matplotlib's
    locators choose are left out, as they may move between versions."""
    from matplotlib.ticker import FixedLocator

    if not isinstance(axis.get_major_locator(), FixedLocator):
        return None
    return [t.get_text() for t in axis.get_ticklabels()]


def _axes(ax) -> dict:
    from matplotlib.patches import Rectangle

    out: dict[str, Any] = {
        "title": [ax.get_title(loc) for loc in ("left", "center", "right")], "xlabel": ax.get_xlabel(),
        "ylabel": ax.get_ylabel(),
        "xscale": ax.get_xscale(), "yscale": ax.get_yscale(),
        "xlim": _nums(ax.get_xlim()), "ylim": _nums(ax.get_ylim()),
        "xticklabels": _ticks(ax.xaxis), "yticklabels": _ticks(ax.yaxis),
        "lines": [{"xy": _nums(line.get_xydata()), "colour": _colour(line.get_color()),
                   "marker": str(line.get_marker()), "linestyle": str(line.get_linestyle()),
                   "label": _label(line)} for line in ax.lines],
        "collections": [],
        "patches": [],
        "texts": [{"text": t.get_text(), "xy": _nums(t.get_position()), "colour": _colour(t.get_color())}
                  for t in ax.texts],
    }
    for c in ax.collections:
        item: dict[str, Any] = {"type": type(c).__name__, "label": _label(c),
                                "facecolours": _colours(c.get_facecolors())}
        offsets = c.get_offsets()
        if len(offsets):
            item["offsets"] = _nums(offsets)
        values = c.get_array()
        if values is not None:
            item["values"] = _nums(values)
        out["collections"].append(item)
    for p in ax.patches:
        item = {"type": type(p).__name__, "facecolour": _colour(p.get_facecolor()), "hatch": p.get_hatch()}
        if isinstance(p, Rectangle):
            item["xywh"] = _nums([*p.get_xy(), p.get_width(), p.get_height()])
        out["patches"].append(item)
    legend = ax.get_legend()
    out["legend"] = [t.get_text() for t in legend.get_texts()] if legend is not None else None
    return out


def drawn(fig) -> dict:
    """The content of ``fig`` as plain data (see the module docstring)."""
    suptitle = getattr(fig, "_suptitle", None)
    return {"suptitle": suptitle.get_text() if suptitle is not None else None,
            "texts": [t.get_text() for t in fig.texts],
            "axes": [_axes(ax) for ax in fig.axes]}


def sidecar(png: str | Path) -> Path:
    return Path(png).with_suffix(".json")


def save_figure(fig, path: Path, dpi: int) -> Path:
    """Save ``fig`` as a PNG at ``path`` (no Software entry: same cards, same bytes under one matplotlib) and
    its :func:`drawn` record beside it."""
    import matplotlib

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, metadata={"Software": None}, facecolor="white")
    sidecar(path).write_text(dumps(matplotlib.__version__, drawn(fig)), encoding="utf-8", newline="\n")
    return path


def dumps(version: str, record: dict) -> str:
    """Valid JSON with one line per axes, so that a change reads as a line in a diff."""
    def one(value) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    head = {k: v for k, v in record.items() if k != "axes"}
    axes = ",\n".join(one(ax) for ax in record["axes"])
    return f'{{"matplotlib":{one(version)},\n"drawn":{one(head)[:-1]},"axes":[\n{axes}\n]}}}}\n'



def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
