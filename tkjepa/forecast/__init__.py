"""Forecasting hand trajectories from the JEPA latents and the thinker's pyramid: the paper's main experiment.

data (cached encoder tokens + thinker features of episodes, `ForecastData`) → model (`Forecaster`, its config
and the named variants) → train (one forecaster) → evaluate (scores, a folder of checkpoints) → bench (every
model over seeds, and the ablations). Import submodules directly (`from tkjepa.forecast.model import
load_forecaster`).
"""
