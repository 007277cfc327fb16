"""The Gradio rollout viewer: compute (Gradio-free: one episode's forecasts, errors, attributions, figures)
→ app (the page, `build_demo`, what `tkjepa viewer` and `make demo` serve)."""
