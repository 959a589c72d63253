"""App services between the Gradio tabs (src/ui/) and the TTS core (tortoise/)."""
