"""FaceStudio's web UI: `python app.py` opens the studio in a browser tab.

A thin front over the same functions the command line uses. Nothing heavy is imported or loaded at start: the
face models are created on the first request. This first version has the Identity tab (face analysis); generation,
inpainting, training and model management arrive as tabs over the engine.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading

import gradio as gr

from facestudio import __version__
from facestudio.errors import FaceStudioError

logger = logging.getLogger("facestudio.app")

MAX_UPLOAD = "25mb"
IMAGE_TYPES = [".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"]


class Studio:
    """Holds the lazily created face analyzer shared by all requests."""

    def __init__(self, backend: str = "auto"):
        self.backend = backend
        self._analyzer = None
        self._lock = threading.Lock()

    @property
    def analyzer(self):
        with self._lock:
            if self._analyzer is None:
                from facestudio.face import FaceAnalyzer

                self._analyzer = FaceAnalyzer(backend=self.backend)
            return self._analyzer

    def analyze(self, path: str | None):
        """Uploaded photo → overlay picture, aligned FACT crop, head mask and a JSON report."""
        from facestudio.face import load_image
        from facestudio.face.debug import draw_analysis

        if not path:
            raise gr.Error("Upload a photo first.")
        try:
            image = load_image(path, name=os.path.basename(path))
            analysis = self.analyzer.analyze(image)
            parsings = [self.analyzer.parse(image, face) for face in analysis.faces[:16]]
            overlay = draw_analysis(image, analysis.faces, parsings)
            crop = head = None
            if analysis.faces:
                crop = self.analyzer.reference_crop(image, analysis.faces[0], parsings[0])
                head = (parsings[0].head_mask() * 255).astype("uint8")
        except FaceStudioError as err:
            raise gr.Error(str(err)) from err
        report = analysis.to_dict()
        report["image"] = os.path.basename(path)
        return overlay, crop, head, report


def build_ui(studio: Studio) -> gr.Blocks:
    with gr.Blocks(title="FaceStudio") as demo:
        gr.Markdown(f"# FaceStudio\nIdentity-preserving portraits with the FACT face adapter · v{__version__}")
        with gr.Tab("Identity"):
            gr.Markdown("Upload a photo to see each face found, its five landmarks, face regions, the head mask "
                        "and the aligned crop FACT's face encoder receives. Face 0 is the largest.")
            with gr.Row():
                photo = gr.Image(type="filepath", label="Photo", sources=["upload", "clipboard"], height=420)
                overlay = gr.Image(label="Faces found", interactive=False, height=420)
            with gr.Row():
                crop = gr.Image(label="Aligned crop (face 0)", interactive=False, height=224)
                head = gr.Image(label="Head mask (face 0)", interactive=False, height=224)
                report = gr.JSON(label="Analysis")
            button = gr.Button("Analyze", variant="primary")
            button.click(studio.analyze, inputs=photo, outputs=[overlay, crop, head, report], api_name="analyze",
                         concurrency_id="gpu", concurrency_limit=1)
    return demo


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description="Start the FaceStudio web UI.")
    parser.add_argument("--host", default=env("FACESTUDIO_HOST", "127.0.0.1"),
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for the local network)")
    parser.add_argument("--port", type=int, default=int(env("FACESTUDIO_PORT", "7860")), help="port (default 7860)")
    parser.add_argument("--share", action="store_true", default=env("FACESTUDIO_SHARE") == "1",
                        help="also publish a temporary public gradio.live link")
    parser.add_argument("--auth", default=env("FACESTUDIO_AUTH"), metavar="USER:PASS",
                        help="require this user name and password")
    parser.add_argument("--backend", default=env("FACESTUDIO_FACE_BACKEND", "auto"),
                        choices=("auto", "mediapipe", "insightface"), help="face detector backend (default auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    auth = None
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep or not user or not password:
            raise SystemExit("error: --auth must be USER:PASS, both non-empty.")
        auth = (user, password)
    if args.share and auth is None:
        logger.warning("--share without --auth: anyone with the public link can use this studio and its GPU.")
    demo = build_ui(Studio(backend=args.backend))
    demo.queue(max_size=32, default_concurrency_limit=1)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, auth=auth,
                max_file_size=MAX_UPLOAD, show_error=True)


if __name__ == "__main__":
    main()
