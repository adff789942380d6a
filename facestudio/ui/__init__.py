"""The web front: the studio's Gradio page (`app.py` launches it). Only this package and `app.py` import gradio."""
