"""The studio in a real browser (Playwright driving Debian's Chromium): what a person does, click by click.

Open the page, check a photo in Identity, pick a style and generate in Generate, start a training job and cancel
it in Train; pick faces by clicking them (Identity, Inpaint) and train from a saved identity; and take a screenshot of every tab into `test-artifacts/screenshots/` (or FACESTUDIO_SCREENSHOTS).
No browser is downloaded: Chromium comes from `apt-get install chromium`. Where it is missing the test is skipped,
unless FACESTUDIO_REQUIRE_BROWSER=1 (CI sets it), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = Path(os.environ.get("FACESTUDIO_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
TABS = ("Identity", "Generate", "Inpaint", "Train", "Models")


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("FACESTUDIO_SCREENSHOTS", REPO_ROOT / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install -r requirements-dev.txt)"
    if missing is None and not CHROMIUM.exists():
        missing = f"Chromium is not at {CHROMIUM} (apt-get install chromium)"
    if missing:
        if os.environ.get("FACESTUDIO_REQUIRE_BROWSER") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    local = studio.url.rstrip("/")
    page.route(lambda url: not url.startswith(local), lambda route: route.abort())  # nothing leaves the machine
    page.goto(studio.url, wait_until="domcontentloaded")
    page.get_by_role("tab", name="Identity").wait_for()
    yield page
    context.close()


def open_tab(page, name: str) -> None:
    from playwright.sync_api import expect

    tab = page.get_by_role("tab", name=name)
    tab.click()
    expect(tab).to_have_attribute("aria-selected", "true")


def test_a_person_checks_a_photo_generates_in_a_style_and_trains(page, studio, faces_dir, tmp_path):
    from playwright.sync_api import expect

    shots = screenshots_dir()
    for old in shots.glob("*.png"):
        old.unlink()
    photo = tmp_path / "me.jpg"
    shutil.copy(faces_dir / "obama.jpg", photo)
    second = tmp_path / "me2.jpg"
    shutil.copy(faces_dir / "obama2.jpg", second)

    # Identity: upload, analyze, see the face.
    page.locator("#identity-photos input[type=file]").set_input_files([str(photo)])
    page.locator("#identity-analyze").click()
    expect(page.locator("#identity-overlays .grid-wrap img")).to_have_count(1, timeout=60_000)
    expect(page.locator("#identity-status")).to_contain_text("1 of 1 photo(s) usable")
    page.screenshot(path=str(shots / "1-identity.png"), full_page=True)

    # Generate: the photo, a style from the gallery, Generate, an image in the results.
    open_tab(page, "Generate")
    page.locator("#generate-photos input[type=file]").set_input_files([str(photo)])
    expect(page.locator("#generate-photos tbody tr")).to_have_count(1)
    page.locator("#generate-quick input").check()  # no GPU here: 256 px, 10 steps, whatever the style says
    prompt = page.locator("#generate-prompt textarea")
    before = prompt.input_value()
    thumbnails = page.locator("#generate-presets .grid-wrap img")
    expect(thumbnails).to_have_count(len([p for p in studio.ctx.presets if p.thumbnail]))
    chosen = studio.ctx.presets[0]
    thumbnails.first.click()
    expect(prompt).not_to_have_value(before)
    assert chosen.render_prompt("a person") == prompt.input_value()
    page.locator("#generate-button").click()
    expect(page.locator("#generate-gallery .grid-wrap img")).to_have_count(1, timeout=180_000)
    expect(page.locator("#generate-info")).to_contain_text("Seed used")
    page.screenshot(path=str(shots / "2-generate.png"), full_page=True)

    # Inpaint: a template photo and its numbered faces.
    open_tab(page, "Inpaint")
    page.locator("#inpaint-template input[type=file]").set_input_files([str(second)])
    expect(page.locator("#inpaint-numbered img")).to_be_visible(timeout=60_000)
    page.screenshot(path=str(shots / "3-inpaint.png"), full_page=True)

    # Train: photos, a name, a small run; progress shows, then Cancel stops it.
    open_tab(page, "Train")
    page.locator("#train-photos input[type=file]").set_input_files([str(photo), str(second)])
    expect(page.locator("#train-photos tbody tr")).to_have_count(2)
    page.locator("#train-name textarea, #train-name input").first.fill("Browser test")
    page.locator("#train-steps input").fill("400")
    page.get_by_text("More settings").click()
    page.locator("#train-resolution input").fill("64")
    page.locator("#train-start").click()
    expect(page.locator("#train-message")).to_contain_text("Queued job", timeout=120_000)
    progress = page.locator("#train-progress")
    expect(progress).to_contain_text("running · step", timeout=240_000)
    expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(shots / "4-train.png"), full_page=True)
    page.locator("#train-cancel").click()
    expect(progress).to_contain_text("cancelled", timeout=240_000)
    page.screenshot(path=str(shots / "4-train-cancelled.png"), full_page=True)

    # Models: the table and the machine.
    open_tab(page, "Models")
    expect(page.locator("#models-machine")).to_contain_text("RAM")
    page.screenshot(path=str(shots / "5-models.png"), full_page=True)

    assert sorted(p.name for p in shots.glob("*.png")) == ["1-identity.png", "2-generate.png", "3-inpaint.png",
                                                           "4-train-cancelled.png", "4-train.png", "5-models.png"]


def inside_viewport(page, selector: str) -> bool:
    """Whether the element lies wholly inside the window as it opened (no scrolling)."""
    box = page.locator(selector).bounding_box()
    size = page.viewport_size
    return box is not None and box["y"] >= 0 and box["x"] >= 0 and box["y"] + box["height"] <= size["height"] \
        and box["x"] + box["width"] <= size["width"]


def test_generate_fits_one_screen_with_progress_history_compare_and_errors(browser, studio, faces_dir, tmp_path):
    """Issue 15: at 1400x900 the inputs, the Generate button and the results are on screen together; one progress
    element with the time left; a history of the session's results; compare labelled with identity scores; the
    last error kept beside the button; a result saved as a style's thumbnail."""
    from playwright.sync_api import expect

    shots = screenshots_dir()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    local = studio.url.rstrip("/")
    page.route(lambda url: not url.startswith(local), lambda route: route.abort())
    page.goto(studio.url, wait_until="domcontentloaded")
    open_tab(page, "Generate")
    quick = page.locator("#generate-quick")
    expect(quick).to_be_visible()  # the studio runs on the CPU here: said once, with the quick preview offered
    expect(quick).to_contain_text("No GPU")
    assert page.evaluate("window.scrollY") == 0
    for selector in ("#generate-identity", "#generate-photos", "#generate-presets", "#generate-prompt",
                     "#generate-button", "#generate-status", "#generate-gallery"):
        assert inside_viewport(page, selector), f"{selector} is not on screen at 1400x900"
    # Every card of the style gallery fits its column (none clipped) and shows its whole name.
    cards = page.locator("#generate-presets .grid-wrap .thumbnail-item")
    expect(cards).to_have_count(len(studio.ctx.presets))
    gallery_box = page.locator("#generate-presets").bounding_box()
    for index in range(min(7, cards.count())):
        box = cards.nth(index).bounding_box()
        assert box["x"] + box["width"] <= gallery_box["x"] + gallery_box["width"] + 1, f"card {index} is clipped"
    names = page.locator("#generate-presets .caption-label").all_inner_texts()
    assert names[:3] == [p.name for p in studio.ctx.presets[:3]]
    page.screenshot(path=str(shots / "2-generate-start.png"))

    photo = tmp_path / "me.jpg"
    shutil.copy(faces_dir / "obama.jpg", photo)
    page.locator("#generate-photos input[type=file]").set_input_files([str(photo)])
    expect(page.locator("#generate-photos tbody tr")).to_have_count(1)
    quick.locator("input").check()
    size = page.locator("#generate-size input")
    expect(size).to_have_value("256x256")
    big = next(i for i, p in enumerate(studio.ctx.presets) if (p.width, p.height) != (256, 256))
    cards.nth(big).click()
    expect(page.locator("#generate-preset-info")).to_contain_text("Quick preview keeps 256x256")
    expect(size).to_have_value("256x256")  # the style did not override the quick preview

    # One progress element, beside the button, with the time left (from the second step on).
    page.locator("#generate-more").get_by_text("Advanced:").click()
    page.locator("#generate-steps input[type=number]").fill("4")
    page.locator("#generate-steps input[type=number]").press("Enter")
    page.locator("#generate-button").click()
    status = page.locator("#generate-status")
    expect(status).to_contain_text("left", timeout=180_000)
    expect(page.locator(".progress-level").locator("visible=true")).to_have_count(1)
    page.screenshot(path=str(shots / "2-generate-running.png"))
    history = page.locator("#generate-history .grid-wrap img")
    expect(history).to_have_count(1, timeout=240_000)
    expect(status).to_contain_text("1 image(s) in")

    page.locator("#generate-steps input[type=number]").fill("2")
    page.locator("#generate-steps input[type=number]").press("Enter")
    page.locator("#generate-button").click()
    expect(history).to_have_count(2, timeout=180_000)
    captions = page.locator("#generate-history .caption-label").all_inner_texts()
    assert len(captions) == 2 and all("seed" in c and "strength" in c and "identity" in c for c in captions)

    # Compare: the last seed, a label under each image with its identity score, and the plot.
    page.get_by_text("Compare strengths (one seed").click()
    # The fold's table is drawn (its code loads on first show) before typing, so nothing redraws over the text.
    expect(page.locator("#generate-compare-table")).to_contain_text("CLIP score")
    strengths = page.locator("#generate-compare-fold textarea, #generate-compare-fold input[type=text]").first
    strengths.fill("0, 0.8")
    expect(strengths).to_have_value("0, 0.8")
    page.locator("#generate-compare").click()
    expect(history).to_have_count(4, timeout=180_000)
    labels = page.locator("#generate-gallery .caption-label")
    expect(labels).to_have_count(2)
    for text, strength in zip(labels.all_inner_texts(), ("0", "0.8"), strict=True):
        assert text.startswith(f"strength {strength} ·") and "identity" in text
    expect(page.locator("#generate-compare-status")).to_contain_text("2 image(s) in")
    expect(page.locator("#generate-plot")).to_be_visible()
    # No CLIP model on disk: the page says how to get the CLIP score instead of downloading it.
    expect(page.locator("#generate-info")).to_contain_text("No CLIP score")
    expect(page.locator("#generate-compare-table")).to_contain_text("not available")
    seeds = {c.split(" · ")[0] for c in page.locator("#generate-history .caption-label").all_inner_texts()[:3]}
    assert len(seeds) == 1, f"the comparison and the run before it used one seed: {seeds}"

    # History: reuse a seed; save a result as the chosen style's thumbnail.
    history.nth(3).click()
    page.keyboard.press("Escape")
    page.locator("#generate-reuse-seed").click()
    expect(page.locator("#generate-history-note")).to_contain_text("Seed")
    page.locator("#generate-thumbnail").click()
    expect(page.locator("#generate-history-note")).to_contain_text("thumbnail of")
    assert (studio.home / "thumbnails" / f"{studio.ctx.presets[big].key}.png").is_file()

    # An error stays beside the button that caused it.
    page.locator("#generate-compare-fold textarea, #generate-compare-fold input[type=text]").first.fill("a, b")
    page.locator("#generate-compare").click()
    compare_status = page.locator("#generate-compare-status")
    expect(compare_status).to_contain_text("Strengths are numbers", timeout=60_000)
    page.wait_for_timeout(6_000)  # longer than the toast stays
    expect(compare_status).to_contain_text("Strengths are numbers")
    page.locator("#generate-reuse").click()
    expect(page.locator("#generate-history-note")).to_contain_text("picked result's settings")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(shots / "2-generate-session.png"))
    context.close()


def test_faces_are_picked_by_clicking_and_training_starts_from_a_saved_identity(page, studio, faces_dir, tmp_path):
    """Identity: click a face of a group photo, the similarity matrix, save; Inpaint: the template once, click a
    face, the same spot becomes the mask editor; Train: from the saved identity, quick-test preset, the status in
    words and the line beside Cancel following the job; Models: the defaults' download button with its size."""
    from playwright.sync_api import expect

    shots = screenshots_dir()
    second = tmp_path / "me2.jpg"
    shutil.copy(faces_dir / "obama2.jpg", second)
    group = tmp_path / "group.png"
    boxes = two_people(faces_dir, group, studio)

    # Identity: a group photo and a portrait; the plain overlay, the similarity matrix, and a click on the second
    # face of the group picks it (the portrait is of the same person as that face).
    page.locator("#identity-photos input[type=file]").set_input_files([str(group), str(second)])
    page.locator("#identity-analyze").click()
    expect(page.locator("#identity-overlays .grid-wrap img")).to_have_count(2, timeout=60_000)
    expect(page.locator("#identity-status")).to_contain_text("2 of 2 photo(s) usable")
    expect(page.locator("#identity-matrix")).to_contain_text("1: me2.jpg")
    expect(page.locator("#identity-regions")).to_be_hidden()  # regions behind the toggle
    faces_used = page.locator("#identity-faces-used textarea, #identity-faces-used input").first
    expect(faces_used).to_have_value("0, 0")
    click_image_at(page, "#identity-picker img", boxes[1])
    expect(faces_used).to_have_value("1, 0", timeout=60_000)
    expect(page.locator("#identity-status")).to_contain_text("2 of 2 photo(s) usable", timeout=60_000)
    expect(page.locator("#identity-matrix")).to_contain_text("✓")
    page.locator("#identity-name textarea, #identity-name input").first.fill("Browser Person")
    page.locator("#identity-save").click()
    expect(page.locator("#identity-status")).to_contain_text("Saved **Browser Person**".replace("**", ""),
                                                             timeout=60_000)
    page.screenshot(path=str(shots / "1-identity-picked.png"), full_page=True)

    # Inpaint: one canvas; the template's faces numbered, a click on the second picks it.
    open_tab(page, "Inpaint")
    page.locator("#inpaint-template input[type=file]").set_input_files([str(group)])
    expect(page.locator("#inpaint-numbered img")).to_be_visible(timeout=60_000)
    expect(page.locator("#inpaint-template")).to_be_hidden()  # the template is shown once
    expect(page.locator("#inpaint-picked")).to_contain_text("Face 0 of 2")
    click_image_at(page, "#inpaint-numbered img", boxes[1])
    expect(page.locator("#inpaint-picked")).to_contain_text("Face 1 of 2", timeout=30_000)
    page.screenshot(path=str(shots / "3-inpaint-picked.png"), full_page=True)
    # Several people: the picked face gets the saved identity in the assignments list (the recipe turns single).
    page.get_by_text("Several people: a person for each face").click()
    page.locator("#inpaint-assign-identity input").fill("Browser Person")
    page.get_by_role("option", name="Browser Person").click()
    page.locator("#inpaint-assign-add").click()
    expect(page.locator("#inpaint-assignments")).to_contain_text("Browser Person", timeout=30_000)
    page.locator("#inpaint-assign-clear").click()
    expect(page.locator("#inpaint-assignments")).not_to_contain_text("Browser Person", timeout=30_000)
    page.locator("#inpaint-mask").get_by_text("Painted on the canvas").click()
    expect(page.locator("#inpaint-editor")).to_be_visible()
    expect(page.locator("#inpaint-numbered")).to_be_hidden()
    page.screenshot(path=str(shots / "3-inpaint-paint.png"), full_page=True)

    # Train: the saved identity, the quick-test preset (then longer, to cancel it while it runs); readable status,
    # the line beside Cancel follows the state.
    open_tab(page, "Train")
    page.locator("#train-identity input").fill("Browser Person")
    page.get_by_role("option", name="Browser Person").click()
    page.locator("#train-preset").get_by_text("Quick test (40 steps").click()
    steps = page.locator("#train-steps input")
    expect(steps).to_have_value("40")
    steps.fill("400")
    page.get_by_text("More settings").click()
    page.locator("#train-resolution input").fill("64")
    page.locator("#train-start").click()
    expect(page.locator("#train-message")).to_contain_text("Queued job", timeout=120_000)
    progress = page.locator("#train-progress")
    expect(progress).not_to_contain_text("No job selected")
    expect(progress).to_contain_text("running · step", timeout=240_000)
    expect(progress).to_contain_text("started ")
    expect(progress).to_contain_text("warm-up 40 step(s)")
    expect(page.locator("#train-job-message")).to_contain_text("is running. Cancel stops it")
    expect(page.locator("#train-loss canvas, #train-loss svg").first).to_be_visible(timeout=60_000)
    expect(page.locator("#train-details").get_by_text("Job status")).to_be_hidden()  # raw JSON folded
    page.screenshot(path=str(shots / "4-train-from-identity.png"), full_page=True)
    page.locator("#train-cancel").click()
    expect(progress).to_contain_text("cancelled", timeout=240_000)
    expect(page.locator("#train-job-message")).to_contain_text("Resume continues it", timeout=10_000)
    page.screenshot(path=str(shots / "4-train-from-identity-cancelled.png"), full_page=True)

    open_tab(page, "Models")
    expect(page.locator("#models-download-defaults")).to_contain_text("Download the defaults (3.5 GB)")
    expect(page.locator("#models-machine")).to_contain_text("Started with:")
    page.screenshot(path=str(shots / "5-models-in-use.png"), full_page=True)


def two_people(faces_dir, target, studio) -> list[list[float]]:
    """A photo of two people side by side (Biden larger, so face 0; Obama face 1), and their boxes as the studio's
    analyzer finds them."""
    from PIL import Image

    from facestudio.face import load_image

    canvas = Image.new("RGB", (1000, 600), (120, 130, 140))
    x = 10
    for name, height in (("biden.jpg", 590), ("obama.jpg", 380)):
        person = Image.open(faces_dir / name).convert("RGB")
        if name == "biden.jpg":  # his head and shoulders
            person = person.crop((0, 0, person.width, int(person.width * 1.2)))
        person.thumbnail((480, height))
        canvas.paste(person, (x, canvas.height - person.height))
        x += person.width + 20
    canvas.save(target)
    faces = studio.ctx.manager.analyzer().analyze(load_image(target)).faces
    assert len(faces) == 2 and faces[0].center[0] < faces[1].center[0], "Biden (left) is the larger face"
    return [[float(v) for v in face.bbox] for face in faces]


def click_image_at(page, selector: str, box: list[float]) -> None:
    """Click the centre of `box` (image pixels) on an image drawn with object-fit: contain."""
    image = page.locator(selector).first
    image.wait_for()
    shown = image.bounding_box()
    natural = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    scale = min(shown["width"] / natural[0], shown["height"] / natural[1])
    left = shown["x"] + (shown["width"] - natural[0] * scale) / 2
    top = shown["y"] + (shown["height"] - natural[1] * scale) / 2
    page.mouse.click(left + (box[0] + box[2]) / 2 * scale, top + (box[1] + box[3]) / 2 * scale)
