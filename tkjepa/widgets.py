"""Notebook controls shared by the lessons.

`controls` replaces `ipywidgets.interact`: in about 60 headless (nbmake) runs, cells using `interact`
intermittently left the kernel hanging for minutes, and none did with plain `observe` callbacks.
"""

from __future__ import annotations


def controls(draw, **widgets) -> None:
    """Widgets that redraw `draw(**values)` (a figure with `.show()`) below them whenever one changes.

    Like `ipywidgets.interact`, except that nothing is drawn until a control moves: show the default
    figure directly in the cell, so the lesson reads the same when it runs headless.
    """
    from IPython.display import clear_output, display
    from ipywidgets import HBox, Label, Output, VBox

    if not widgets:
        raise ValueError("controls() needs at least one widget, e.g. controls(draw, episode=IntSlider(...))")
    out = Output()

    def redraw(_change=None) -> None:
        with out:
            clear_output(wait=True)
            draw(**{name: w.value for name, w in widgets.items()}).show()

    for w in widgets.values():
        w.observe(redraw, names="value")
    display(VBox([HBox([Label("redraw:"), *widgets.values()]), out]))
