"""The identity tools in the page (issue 16), through `gradio_client` against the studio over the tiny models:
"Reuse settings" fills the identity tools' controls too, several people from photos uploaded per face, and
compare strengths with the CLIP score, its plot and the recommended strength."""

from __future__ import annotations

import shutil

from tests.ui.test_api import generate_args


def test_reuse_fills_every_control_from_a_record_with_non_default_values(client, photo, studio):
    from gradio_client import handle_file

    from facestudio.ui.generate_tab import REUSED_CONTROLS

    (studio.home / "loras").mkdir(exist_ok=True)
    shutil.copy(studio.tiny.lora, studio.home / "loras" / "reused.safetensors")
    chosen = dict(prompt="a reused knight", negative_prompt="grainy", face_strength=0.7, face_delay_steps=1,
                  face_cfg=False, steps=2, cfg=5.5, scheduler="Euler", seed=21, random_seed=False, size="256x256",
                  lora="loras/reused.safetensors", lora_scale=0.6, pose_strength=0.7, face_fix="on",
                  face_fix_denoise=0.3, best_of=2, keep=2)
    gallery, *_ = client.predict(**generate_args(studio, photos=[photo("obama.jpg")], **chosen),
                                 api_name="/generate")
    assert len(gallery) == 2
    # The second-best image: its own seed may be 22, but the run that made it started at 21.
    values = client.predict(handle_file(gallery[1]["image"]), api_name="/reuse_png")
    reused = dict(zip(REUSED_CONTROLS, values, strict=True))
    assert reused.pop("size")["value"] == "256x256"
    assert reused.pop("num_images") == 1  # best of N takes one image per candidate
    for name in ("base_model", "adapter"):  # the tiny models lie outside FACESTUDIO_HOME: not offered by name
        reused.pop(name)
    expected = {name: value for name, value in chosen.items() if name in reused}
    assert reused == expected, "every control gets the record's value"
    assert set(reused) | {"size", "num_images", "base_model", "adapter"} == set(REUSED_CONTROLS)
