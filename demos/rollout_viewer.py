"""The Gradio rollout viewer on the shipped checkpoints and sample episodes.

    python demos/rollout_viewer.py      # or `make demo`, or `tkjepa viewer [--data DIR] [--port P]`

The page itself is `tkjepa.viewer.app.build_demo`, inside the package so that the `tkjepa` command finds it
wherever tkjepa is installed; this file exposes it as a module-level `demo`, the form Gradio's tools (and the
tests) load.
"""

from tkjepa import paths
from tkjepa.viewer.app import build_demo, launch
from tkjepa.viewer.compute import ViewerConfig

demo = build_demo(ViewerConfig(data=paths.EPISODES, checkpoints=paths.FORECASTERS, encoder=paths.ENCODER,
                               thinker=paths.THINKER, cache=paths.CACHE, planner=paths.PLANNER,
                               planner_encoder=paths.ENCODER))

if __name__ == "__main__":
    launch(demo)
