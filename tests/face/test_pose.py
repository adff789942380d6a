"""Body pose for the OpenPose ControlNet: estimation on real photos, COCO-18 mapping, rendering and the `--pose` path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from facestudio.errors import FaceStudioError, PoseNotFoundError
from facestudio.face import load_image
from facestudio.face.pose import (
    LIMB_BRIGHTNESS,
    OPENPOSE_COLORS,
    OPENPOSE_LIMBS,
    POSE_KEYPOINT_NAMES,
    BodyPose,
    PoseEstimator,
    looks_like_pose_map,
    pose_condition,
    pose_from_mediapipe,
    render_openpose,
)
from tests.face.images import noise

PHOTOS = ["obama.jpg", "biden.jpg", "astronaut.png"]
K = {name: index for index, name in enumerate(POSE_KEYPOINT_NAMES)}


class RefusingEstimator(PoseEstimator):
    """Proves a skeleton is used as it is: any attempt to estimate a pose fails the test."""

    def estimate(self, image):
        raise AssertionError("a rendered skeleton must not be re-estimated")


@pytest.fixture(scope="module")
def estimator():
    estimator = PoseEstimator()
    yield estimator
    estimator.close()


@pytest.fixture(scope="module")
def photos(faces_dir):
    return {name: load_image(faces_dir / name) for name in PHOTOS}


@pytest.fixture(scope="module")
def poses(photos, estimator):
    return {name: estimator.estimate(image) for name, image in photos.items()}


def test_full_body_photo_gives_an_upright_pose_with_sides_the_right_way_round(poses, photos):
    pose = poses["biden.jpg"]
    assert pose is not None
    assert (pose.width, pose.height) == photos["biden.jpg"].size == (970, 2204)
    for name in ("nose", "neck", "r_shoulder", "l_shoulder", "r_hip", "l_hip", "r_eye", "l_eye"):
        assert pose.visible[K[name]], name
    y = {name: pose.keypoints[K[name], 1] for name in POSE_KEYPOINT_NAMES}
    hips = (y["r_hip"] + y["l_hip"]) / 2
    assert y["nose"] < y["neck"] < hips
    for side in ("r_", "l_"):
        if pose.visible[K[side + "knee"]]:
            assert y[side + "knee"] > y[side + "hip"]
    # The photo stops at the knees: the ankles MediaPipe guesses below the frame must not count as seen.
    assert not pose.visible[K["r_ankle"]] and not pose.visible[K["l_ankle"]]
    # Frontal photo: the person's right side is on the image's left.
    x = {name: pose.keypoints[K[name], 0] for name in POSE_KEYPOINT_NAMES}
    assert x["r_shoulder"] < x["neck"] < x["l_shoulder"]
    assert x["r_hip"] < x["l_hip"]
    assert x["r_eye"] < x["l_eye"]
    # The neck is the shoulders' midpoint; shoulders are about a head apart or more.
    assert np.allclose(pose.keypoints[K["neck"]], (pose.keypoints[K["r_shoulder"]] + pose.keypoints[K["l_shoulder"]]) / 2)
    assert x["l_shoulder"] - x["r_shoulder"] > 0.3 * pose.width
    seen = pose.keypoints[pose.visible]
    assert np.all((seen >= 0) & (seen < [pose.width, pose.height]))


@pytest.mark.parametrize("name", ["obama.jpg", "astronaut.png"])
def test_head_and_shoulders_portraits_give_a_pose(poses, name):
    pose = poses[name]
    assert pose is not None
    assert pose.visible[[K["nose"], K["neck"], K["r_shoulder"], K["l_shoulder"]]].all()
    assert pose.keypoints[K["r_shoulder"], 0] < pose.keypoints[K["l_shoulder"], 0]
    assert pose.keypoints[K["nose"], 1] < pose.keypoints[K["neck"], 1]
    seen = pose.keypoints[pose.visible]
    assert np.all((seen >= 0) & (seen < [pose.width, pose.height]))


def test_mediapipe_landmarks_map_onto_coco18():
    landmarks = np.zeros((33, 3))
    landmarks[:, 2] = 0.9
    landmarks[:, :2] = 0.5
    landmarks[0, :2] = (0.5, 0.1)     # nose
    landmarks[11, :2] = (0.7, 0.3)    # MediaPipe LEFT_SHOULDER (the person's left)
    landmarks[12, :2] = (0.3, 0.3)    # RIGHT_SHOULDER
    landmarks[27, :2] = (0.6, 1.2)    # LEFT_ANKLE, below the frame
    landmarks[15, 2] = 0.1            # LEFT_WRIST, not confident
    pose = pose_from_mediapipe(landmarks, 200, 400)
    assert np.allclose(pose.keypoints[K["nose"]], (100, 40))
    assert np.allclose(pose.keypoints[K["l_shoulder"]], (140, 120))
    assert np.allclose(pose.keypoints[K["r_shoulder"]], (60, 120))
    assert np.allclose(pose.keypoints[K["neck"]], (100, 120)) and pose.visible[K["neck"]]
    assert not pose.visible[K["l_ankle"]] and pose.visible[K["r_ankle"]]
    assert not pose.visible[K["l_wrist"]] and pose.visible[K["r_wrist"]]

    landmarks[12, 2] = 0.2  # one shoulder unseen: no neck either
    assert not pose_from_mediapipe(landmarks, 200, 400).visible[K["neck"]]
    with pytest.raises(ValueError):
        pose_from_mediapipe(landmarks[:17], 200, 400)


def test_scaled_maps_coordinates_into_the_resized_image(poses):
    pose = poses["biden.jpg"]
    half = pose.scaled(485, 551)
    assert (half.width, half.height) == (485, 551)
    assert np.allclose(half.keypoints, pose.keypoints * [0.5, 0.25])
    assert np.array_equal(half.visible, pose.visible)
    assert np.allclose(half.scaled(970, 2204).keypoints, pose.keypoints)
    assert pose.point("r_ankle") is None and np.allclose(pose.point("nose"), pose.keypoints[K["nose"]])
    with pytest.raises(ValueError):
        pose.scaled(0, 100)
    with pytest.raises(ValueError):
        BodyPose(keypoints=np.zeros((17, 2)), visible=np.ones(17, bool), width=10, height=10)


def test_render_draws_openpose_colours_on_black_at_the_requested_size(poses):
    pose = poses["biden.jpg"]
    skeleton = render_openpose(pose, 512, 1024)
    assert skeleton.mode == "RGB" and skeleton.size == (512, 1024)
    pixels = np.asarray(skeleton)
    assert (pixels.max(axis=2) == 0).mean() > 0.85
    mapped = pose.scaled(512, 1024)
    for index in np.flatnonzero(mapped.visible):
        x, y = np.round(mapped.keypoints[index]).astype(int)
        window = pixels[max(0, y - 1) : y + 2, max(0, x - 1) : x + 2].reshape(-1, 3)
        assert (window == OPENPOSE_COLORS[index]).all(axis=1).any(), POSE_KEYPOINT_NAMES[index]
    # Limbs are dimmed: halfway along neck -> right shoulder (limb 0) is 60% red.
    assert OPENPOSE_LIMBS[0] == (K["neck"], K["r_shoulder"])
    x, y = np.round((mapped.keypoints[K["neck"]] + mapped.keypoints[K["r_shoulder"]]) / 2).astype(int)
    assert tuple(pixels[y, x]) == tuple(int(c * LIMB_BRIGHTNESS) for c in OPENPOSE_COLORS[0])
    # Nothing is drawn for an unseen joint or its limbs.
    hidden = BodyPose(keypoints=mapped.keypoints, visible=mapped.visible & (np.arange(18) != K["nose"]), width=512,
                      height=1024)
    x, y = np.round(mapped.keypoints[K["nose"]]).astype(int)
    assert not np.asarray(render_openpose(hidden))[y, x].any()
    assert render_openpose(pose).size == (970, 2204)
    assert render_openpose(pose, width=485).size == (485, 1102)


def test_strokes_scale_with_the_map(poses):
    pose = poses["obama.jpg"]
    small = (np.asarray(render_openpose(pose, 256, 320)).max(axis=2) > 0).mean()
    large = (np.asarray(render_openpose(pose, 1024, 1280)).max(axis=2) > 0).mean()
    assert large == pytest.approx(small, rel=0.25)  # same share of the picture, so strokes grew with it


def test_pose_map_heuristic_tells_skeletons_from_photos(poses, photos):
    for name, image in photos.items():
        assert not looks_like_pose_map(image), name
        skeleton = render_openpose(poses[name])
        assert looks_like_pose_map(skeleton), name
        buffer = io.BytesIO()
        skeleton.save(buffer, "JPEG", quality=80)
        assert looks_like_pose_map(Image.open(buffer)), f"{name} as JPEG"
    assert not looks_like_pose_map(Image.new("RGB", (300, 300)))
    assert not looks_like_pose_map(Image.new("RGB", (300, 300), (128, 128, 128)))
    assert not looks_like_pose_map(noise())


def test_auto_uses_a_skeleton_as_it_is(poses):
    skeleton = render_openpose(poses["biden.jpg"])
    condition = pose_condition(skeleton, 384, 768, estimator=RefusingEstimator())
    assert condition.size == (384, 768) and condition.mode == "RGB"
    assert np.array_equal(np.asarray(condition), np.asarray(skeleton.resize((384, 768), Image.Resampling.BILINEAR)))
    same = pose_condition(skeleton, 970, 2204, mode="skeleton", estimator=RefusingEstimator())
    assert np.array_equal(np.asarray(same), np.asarray(skeleton))


def test_auto_on_a_photo_renders_its_pose_at_the_requested_size(photos, poses, estimator):
    condition = pose_condition(photos["biden.jpg"], 512, 768, name="biden.jpg", estimator=estimator)
    assert condition.size == (512, 768)
    assert looks_like_pose_map(condition)
    mapped = poses["biden.jpg"].scaled(512, 768)
    x, y = np.round(mapped.keypoints[K["r_shoulder"]]).astype(int)
    assert tuple(np.asarray(condition)[y, x]) == OPENPOSE_COLORS[K["r_shoulder"]]
    photo_mode = pose_condition(photos["obama.jpg"], 512, 640, mode="photo", estimator=estimator)
    assert photo_mode.size == (512, 640) and looks_like_pose_map(photo_mode)


@pytest.mark.parametrize("image", [Image.new("RGB", (512, 512), (128, 128, 128)), noise((512, 512))],
                         ids=["grey", "noise"])
def test_no_person_raises_pose_not_found_naming_the_image(image, estimator):
    assert estimator.estimate(image) is None
    with pytest.raises(PoseNotFoundError, match=r"^No body pose found in empty\.png;") as caught:
        pose_condition(image, 512, 512, name="empty.png", estimator=estimator)
    assert isinstance(caught.value, FaceStudioError)


def test_unknown_mode_and_bad_arguments_are_refused(photos):
    with pytest.raises(ValueError, match="mode"):
        pose_condition(photos["obama.jpg"], 512, 512, mode="depth", estimator=RefusingEstimator())
    with pytest.raises(ValueError):
        pose_condition(photos["obama.jpg"], 0, 512, mode="skeleton")
    with pytest.raises(ValueError):
        PoseEstimator(min_visibility=1.5)


def test_estimator_can_be_closed_and_reused(photos):
    with PoseEstimator() as estimator:
        assert estimator.estimate(photos["astronaut.png"]) is not None
        estimator.close()
        assert estimator.estimate(photos["astronaut.png"]) is not None
    estimator.close()
