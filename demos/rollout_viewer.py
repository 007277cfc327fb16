"""The Gradio rollout viewer (issue 7) on the shipped checkpoints and sample episodes.

    python demos/rollout_viewer.py      # or `make demo`, or `tkjepa viewer [--data DIR] [--port P]`

The page itself is `tkjepa.viewer_app.build_demo`, inside the package so that the `tkjepa` command finds it
wherever tkjepa is installed; this file exposes it as a module-level `demo`, the form Gradio's tools (and the
tests) load.
"""

from tkjepa.viewer_app import build_demo, launch

demo = build_demo()

if __name__ == "__main__":
    launch(demo)
