"""Architecture diagrams: boxes and arrows for the component lessons."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


# -- architecture diagrams ----------------------------------------------------------------------------------
def diagram_figure(boxes: dict, arrows, title: str = "", height: int = 320, notes: dict | None = None) -> go.Figure:
    """Boxes and arrows: `boxes` {name: (x, y, colour)} (a box is 0.88 × 0.6 around its centre), `arrows`
    [(from, to, label)] drawn between the boxes' edges, grey where the label starts with "no grad"; `notes`
    {name: text} adds a small line (e.g. a measured shape) under a box's name."""
    w, h = 0.44, 0.3
    fig = go.Figure()
    for a, b, label in arrows:
        (x0, y0, _), (x1, y1, _) = boxes[a], boxes[b]
        dx, dy = x1 - x0, y1 - y0
        s = min(w / abs(dx) if dx else np.inf, h / abs(dy) if dy else np.inf)   # leave each box at its edge
        fig.add_annotation(x=x1 - s * dx, y=y1 - s * dy, ax=x0 + s * dx, ay=y0 + s * dy, xref="x", yref="y",
                           axref="x", ayref="y", text="", showarrow=True, arrowhead=3, arrowwidth=1.5,
                           arrowcolor="#999" if label.startswith("no grad") else "#555")
        if label:
            fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=label, showarrow=False, font_size=10,
                               yshift=9, bgcolor="rgba(255,255,255,0.8)")
    for name, (x, y, colour) in boxes.items():
        fig.add_shape(type="rect", x0=x - w, x1=x + w, y0=y - h, y1=y + h, fillcolor=colour, line_color="#555",
                      layer="below")
        extra = f"<br><span style='font-size:10px'>{notes[name]}</span>" if notes and name in notes else ""
        fig.add_annotation(x=x, y=y, text=f"{name}{extra}", showarrow=False, font_size=11)
    xs, ys = [b[0] for b in boxes.values()], [b[1] for b in boxes.values()]
    return fig.update_layout(height=height, width=1000, margin=dict(l=10, r=10, t=40, b=10), plot_bgcolor="white",
                             title=title, xaxis=dict(visible=False, range=[min(xs) - 0.6, max(xs) + 0.6]),
                             yaxis=dict(visible=False, range=[min(ys) - 0.5, max(ys) + 0.5]))


def jepa_diagram_figure() -> go.Figure:
    """The JEPA pretraining step: the context encoder sees the unmasked tubelets, the predictor fills in the
    masked ones' latents, and the EMA target encoder (no gradient) encodes the whole clip for the loss."""
    boxes = {"clip (tubelets)": (0, 0.5, "#eee"), "context encoder<br>(visible tokens)": (1.3, 1, "#8fd18f"),
             "predictor<br>(+ mask tokens)": (2.6, 1, "#8fd18f"), "L1 on masked<br>+ VICReg": (3.9, 0.5, "#ffb366"),
             "EMA target encoder<br>(all tokens)": (1.3, 0, "#ccc"), "target latents": (2.6, 0, "#ddd")}
    n = list(boxes)
    return diagram_figure(boxes, [(n[0], n[1], "mask"), (n[1], n[2], ""), (n[2], n[3], "prediction"),
                                  (n[0], n[4], ""), (n[4], n[5], "no grad"), (n[5], n[3], "no grad"),
                                  (n[1], n[4], "no grad: EMA of weights")],
                          "JEPA pretraining (green: trained by the loss; grey: the EMA copy, no gradient)")


def planner_diagram_figure() -> go.Figure:
    """Planning toward a subgoal: the thinker's words name a subgoal, the subgoal head draws its latent z*, and
    CEM scores candidate actions by rolling the action-conditioned world model to ‖ẑ_{t+H} − z*‖; the first
    action of the best plan runs in the world, which answers with the next frame (MPC)."""
    boxes = {"frames so far": (0, 1, "#eee"), "frozen encoder": (1.3, 1, "#ccc"), "z<sub>t</sub>": (2.6, 1, "#ddd"),
             "world model<br>ẑ<sub>t+1</sub> = g(z<sub>t</sub>, a<sub>t</sub>)": (3.9, 1, "#8fd18f"),
             "energy<br>‖ẑ<sub>t+H</sub> − z*‖": (5.2, 1, "#ffb366"),
             "thinker": (1.3, 0, "#ccc"), "subgoal head → z*": (2.6, 0, "#8fbfe6"),
             "CEM over actions": (3.9, 2, "#ffe0c2"),
             "world (one action)": (5.2, 2, "#eee")}
    n = list(boxes)
    return diagram_figure(boxes, [(n[0], n[1], ""), (n[1], n[2], ""), (n[2], n[3], ""), (n[3], n[4], "H steps"),
                                  (n[0], n[5], "uniform clip"), (n[5], n[6], "words"), (n[6], n[4], "z*"),
                                  (n[4], n[7], "scores"), (n[7], n[3], "candidates"), (n[7], n[8], "best first action"),
                                  (n[8], n[0], "next frame")],
                          "planning toward the thinker's subgoal (model-predictive control)", height=380)


def forecaster_diagram_figure(shapes: dict | None = None) -> go.Figure:
    """The forecaster's data path: frozen encoder -> cached latents -> guided predictor <- pyramid <- cached
    thinker features <- frozen thinker; the observed and predicted latents and the last observed joints ->
    trajectory head -> joints (m). Grey: frozen, computed once and cached; colour: trained. `shapes` {box name:
    text} adds a line (e.g. a measured tensor shape) under a box's name."""
    boxes = {"dense window": (0, 1, "#eee"), "frozen encoder": (1, 1, "#ccc"), "cached latents ctx": (2, 1, "#ddd"),
             "guided predictor": (3, 1, "#8fd18f"), "predicted z": (4, 1, "#d4efd4"),
             "trajectory head": (5, 1, "#ffb366"), "joints (m)": (6, 1, "#ffe0c2"),
             "clip + prompt": (0, 0, "#eee"), "frozen thinker": (1, 0, "#ccc"),
             "thinker features": (2, 0, "#ddd"), "pyramid": (3, 0, "#8fbfe6"),
             "last observed joints": (5.5, 2, "#eee")}
    n = list(boxes)
    arrows = [(a, b, "") for row in (n[:7], n[7:11]) for a, b in zip(row, row[1:])]   # along each row
    arrows += [("pyramid", "guided predictor", ""), ("last observed joints", "trajectory head", "")]
    fig = diagram_figure(boxes, arrows, "the forecaster (grey: frozen, run once and cached; colour: trained)",
                         height=360, notes=shapes)
    # the observed latents reach the head too, routed above the predictor
    fig.add_scatter(x=[2, 2, 4.8], y=[1.3, 1.55, 1.55], mode="lines", line_color="#555", hoverinfo="skip",
                    showlegend=False)
    fig.add_annotation(x=4.8, y=1.3, ax=4.8, ay=1.55, xref="x", yref="y", axref="x", ayref="y", text="",
                       showarrow=True, arrowhead=3, arrowwidth=1.5, arrowcolor="#555")
    return fig.add_annotation(x=3.4, y=1.55, text="observed latents", showarrow=False, yshift=8, font_size=10)
