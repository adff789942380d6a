"""Workspaces: with --auth each user sees only their own identities, jobs and results (another user's answers as a
missing one), --shared-workspace shares everything, and without --auth one browser's results are not another's.
Through `gradio_client` against studios over the tiny models, plus the pieces on their own."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from PIL import Image

import app
from facestudio.errors import DatasetError, InvalidRequestError
from facestudio.jobs import RunState
from facestudio.ui.workspace import EVERYONE, ResultBook, Workspaces, user_folders
from tests.ui.test_api import generate_args

TRAIN = dict(folder="", base_model=None, init="default", steps=4, lr=1e-3, fair_weight=0.01, drop_prob=0.05,
             shuffle_prob=0.5, curriculum=True, resolution=64, batch_size=2, checkpoint_every=2, sample_every=0)


def start_studio(tiny_studio, home, *flags):
    from facestudio.config import StudioSettings
    from tests.ui.conftest import free_port

    args = app.parse_args(["--device", "cpu", "--backend", "mediapipe", "--base-model", str(tiny_studio.base),
                           "--adapter", str(tiny_studio.adapter), "--face-encoder", str(tiny_studio.face_encoder),
                           "--no-jobs", *flags])
    ctx, demo = app.create_studio(args, StudioSettings(home=home, offline=True))
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                auth=app.auth_pairs(args), **app.launch_options(args, ctx))
    return f"http://127.0.0.1:{port}/", ctx, demo


@pytest.fixture(scope="module")
def users(tiny_studio, tmp_path_factory):
    """A studio with two logins (alice, bob), each in a workspace of their own."""
    from gradio_client import Client

    home = tmp_path_factory.mktemp("users-home")
    url, ctx, demo = start_studio(tiny_studio, home, "--auth", "alice:wonder,bob:builder")
    try:
        yield (Client(url, auth=("alice", "wonder"), verbose=False), Client(url, auth=("bob", "builder"), verbose=False),
               ctx, home)
    finally:
        demo.close()


def refused(client, *args, api_name, **kwargs) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as caught:
        client.predict(*args, api_name=api_name, **kwargs)
    return str(caught.value)


def test_bob_cannot_list_see_delete_or_generate_with_alices_identity(users, photo, tiny_studio):
    alice, bob, ctx, home = users
    status, saved = alice.predict([photo("obama.jpg")], "", "Alex", False, api_name="/save_identity")
    assert "Saved **Alex**" in status and saved["choices"] == [["Alex", "Alex"]]
    assert (home / "users" / "alice" / "identities" / "alex" / "identity.json").is_file()
    assert not (home / "identities").exists()
    assert ctx.workspaces.of("bob", None).identities.list() == []
    # Bob's answers for Alice's identity are word for word those for a name nobody saved.
    theirs = refused(bob, "Alex", api_name="/delete_identity")
    assert "no saved identity" in theirs
    assert theirs.replace("Alex", "Ghost") == refused(bob, "Ghost", api_name="/delete_identity")
    settings = generate_args(SimpleNamespace(tiny=tiny_studio), photos=None)
    theirs = refused(bob, **dict(settings, identity="Alex"), api_name="/generate")
    assert theirs.replace("Alex", "Ghost") == refused(bob, **dict(settings, identity="Ghost"), api_name="/generate")
    # Bob saving his own "Alex" does not touch Alice's.
    status, saved = bob.predict([photo("biden.jpg")], "", "Alex", False, api_name="/save_identity")
    assert "Saved **Alex**" in status
    alices = ctx.workspaces.of("alice", None).identities.get("Alex")
    assert alices.folder.parent.parent.name == "alice"


def test_bob_cannot_see_cancel_resume_or_train_from_alices_job(users, photo, tiny_studio):
    alice, bob, ctx, _home = users
    message, job, table = alice.predict(files=[photo("obama.jpg")], name="alice run", **TRAIN,
                                        api_name="/train_start")
    job_id = job["value"]
    assert job_id in message and ctx.jobs.get(job_id).owner == "alice"
    assert [row[0] for row in table["data"]] == [job_id]
    _text, data, *_ = alice.predict(job_id, api_name="/train_status")
    assert data["id"] == job_id and data["owner"] == "alice"
    ghost = "20200101-000000-ghost"
    for api_name in ("/train_status", "/train_cancel", "/train_resume"):
        theirs = refused(bob, job_id, api_name=api_name)
        assert f"no job {job_id}" in theirs, theirs
        assert theirs.replace(job_id, ghost) == refused(bob, ghost, api_name=api_name)
    assert ctx.jobs.effective_status(ctx.jobs.get(job_id)).state == RunState.QUEUED  # bob's cancel did nothing
    bobs_table = bob.predict(None, api_name="/train_status")[5]  # text, job, loss, samples, photo check, table, line
    assert job_id not in str(bobs_table["data"])

    # A finished job's adapter is offered to Alice only; Bob cannot generate with it by naming it.
    finished = ctx.jobs.get(job_id)
    finished.folder.adapter_path.write_bytes(b"not used here")
    finished.folder.write_status(replace(finished.status(), state=RunState.DONE))
    value = f"jobs/{job_id}/adapter.safetensors"
    assert value in {v for _, v in ctx.adapter_choices(ctx.workspaces.of("alice", None))}
    assert value not in {v for _, v in ctx.adapter_choices(ctx.workspaces.of("bob", None))}
    assert value not in {v for _, v in ctx.adapter_choices()}  # nor to a page before it knows who looks
    message = refused(bob, **generate_args(SimpleNamespace(tiny=tiny_studio), photos=[photo("obama.jpg")],
                                           adapter=value), api_name="/generate")
    assert "not one of the offered" in message
    # A training folder of Bob's is inside his folder only.
    folder = refused(bob, files=None, name="peek", **dict(TRAIN, folder="../alice/identities"),
                     api_name="/train_start")
    assert "outside your folder" in folder


def test_results_are_each_users_own_and_pngs_name_no_folder(users, photo, tiny_studio):
    alice, _bob, ctx, home = users
    settings = generate_args(SimpleNamespace(tiny=tiny_studio), photos=[photo("obama.jpg")], seed=31)
    gallery, *_ = alice.predict(**settings, api_name="/generate")
    assert len(gallery) == 1
    kept = sorted((home / "users" / "alice" / "outputs").rglob("generate-*-31.png"))
    assert kept and not (home / "outputs").exists() and not (home / "users" / "bob" / "outputs").exists()
    assert [r.path for r in ctx.results.list(ctx.workspaces.of("alice", "any browser"))] == [kept[-1]]
    assert ctx.results.list(ctx.workspaces.of("bob", None)) == []
    token = ctx.results.list(ctx.workspaces.of("alice", None))[0].token
    with pytest.raises(InvalidRequestError, match="no such result"):
        ctx.results.get(ctx.workspaces.of("bob", None), token)
    record = Image.open(kept[-1]).text["facestudio"]
    for folder in (home, home.parent, tiny_studio.root):
        assert str(folder) not in record and str(folder.resolve()) not in record
    assert "/tmp" not in record and home.name not in record


def test_a_shared_workspace_shares_identities_jobs_and_results(tiny_studio, tmp_path_factory, photo):
    from gradio_client import Client

    home = tmp_path_factory.mktemp("shared-home")
    url, ctx, demo = start_studio(tiny_studio, home, "--auth", "alice:wonder", "--auth", "bob:builder",
                                  "--shared-workspace")
    try:
        alice = Client(url, auth=("alice", "wonder"), verbose=False)
        bob = Client(url, auth=("bob", "builder"), verbose=False)
        alice.predict([photo("obama.jpg")], "", "Alex", False, api_name="/save_identity")
        assert (home / "identities" / "alex").is_dir()
        _message, job, _table = alice.predict(files=[photo("obama.jpg")], name="shared run", **TRAIN,
                                              api_name="/train_start")
        _text, data, *_ = bob.predict(job["value"], api_name="/train_status")
        assert data["id"] == job["value"]
        message, _saved, _ = bob.predict("Alex", api_name="/delete_identity")
        assert "Deleted **Alex**" in message
        assert ctx.workspaces.of("alice", "a").viewer == ctx.workspaces.of("bob", "b").viewer == EVERYONE
    finally:
        demo.close()


def test_without_auth_two_browsers_do_not_see_each_others_results(studio, photo):
    first, second = studio.client(), studio.client()
    first.predict(**generate_args(studio, photos=[photo("obama.jpg")], seed=41), api_name="/generate")
    ctx = studio.ctx
    mine = ctx.results.list(ctx.workspaces.of(None, first.session_hash))
    assert [r.path.name for r in mine][-1].endswith("-41.png")
    assert ctx.results.list(ctx.workspaces.of(None, second.session_hash)) == []
    with pytest.raises(InvalidRequestError):
        ctx.results.get(ctx.workspaces.of(None, second.session_hash), mine[-1].token)
    # identities and jobs stay shared for the one local user, as before
    assert ctx.workspaces.of(None, first.session_hash).root == ctx.workspaces.of(None, second.session_hash).root


# -- the pieces on their own ------------------------------------------------------------------------------------------


def test_auth_takes_several_pairs_from_flags_the_variable_and_a_file(tmp_path, monkeypatch):
    logins = tmp_path / "logins.txt"
    logins.write_text("# team\ncarol:p,with:colons and spaces\n\n")
    args = app.parse_args(["--auth", "alice:a", "--auth", "bob:b,dave:d", "--auth-file", str(logins)])
    assert app.auth_pairs(args) == [("alice", "a"), ("bob", "b"), ("dave", "d"), ("carol", "p,with:colons and spaces")]
    monkeypatch.setenv("FACESTUDIO_AUTH", "eve:e,frank:f")
    assert app.auth_pairs(app.parse_args([])) == [("eve", "e"), ("frank", "f")]
    assert app.auth_pairs(app.parse_args(["--auth", "gina:g"])) == [("gina", "g")]  # a flag wins
    with pytest.raises(SystemExit, match="two passwords"):
        app.parse_auth(["a:1", "a:2"])
    with pytest.raises(SystemExit, match="cannot be read"):
        app.parse_auth(None, tmp_path / "missing.txt")
    assert app.parse_args(["--shared-workspace"]).shared_workspace


def test_user_names_need_their_own_folder():
    assert user_folders(["Alice", "bob.smith"]) == {"Alice": "alice", "bob.smith": "bob-smith"}
    with pytest.raises(InvalidRequestError, match="would share one folder"):
        user_folders(["Alice", "alice"])
    with pytest.raises(InvalidRequestError, match="at least one letter"):
        user_folders(["..."])


def test_workspaces_roots_viewers_and_folders(tmp_path):
    per_user = Workspaces(tmp_path, ["alice", "bob"])
    alice = per_user.of("alice", "s1")
    assert alice.root == tmp_path / "users" / "alice" and alice.viewer == "user:alice" and not alice.shared
    assert per_user.of("alice", "s2").viewer == alice.viewer  # a user's results follow them across browsers
    with pytest.raises(InvalidRequestError, match="Log in"):
        per_user.of(None, "s1")
    assert per_user.page().identities.list() == [] and per_user.page().owner == ""
    (alice.root / "photos").mkdir(parents=True)
    assert alice.folder("photos") == (alice.root / "photos").resolve()
    with pytest.raises(DatasetError, match="outside your folder"):
        alice.folder("../bob")
    with pytest.raises(DatasetError, match="outside your folder"):
        alice.folder(str(tmp_path))
    alone = Workspaces(tmp_path)
    assert alone.of(None, "s1").root == tmp_path and alone.of(None, "s1").viewer != alone.of(None, "s2").viewer
    assert alone.of(None, "s1").shared and alone.page().viewer == EVERYONE


def test_the_result_book_keeps_each_viewers_own(tmp_path):
    spaces = Workspaces(tmp_path, ["alice", "bob"])
    book = ResultBook(limit=2)
    alice, bob = spaces.of("alice", None), spaces.of("bob", None)
    made = [book.add(alice, tmp_path / f"{n}.png", f"seed {n}") for n in range(3)]
    assert [r.caption for r in book.list(alice)] == ["seed 1", "seed 2"] and book.list(bob) == []
    assert book.get(alice, made[2].token) == made[2]
    with pytest.raises(InvalidRequestError, match="no such result"):
        book.get(bob, made[2].token)
    with pytest.raises(InvalidRequestError, match="no such result"):
        book.get(alice, made[0].token)  # forgotten beyond the limit
