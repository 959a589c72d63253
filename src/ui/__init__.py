"""The Gradio web UI: one module per tab, each with `build(ctx) -> dict[str, Component]`."""
