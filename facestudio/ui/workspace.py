"""Whose request this is, and what it may see: the studio's workspaces.

Without `--auth` (or with `--shared-workspace`) there is one workspace, FACESTUDIO_HOME itself: saved identities in
`identities/`, results in `outputs/`, every job. With `--auth` each user gets a folder of their own,
`FACESTUDIO_HOME/users/<name>/` (`identities/`, `outputs/`, and any folder of training photos), and sees only the
jobs they queued (`Job.owner`): the job queue and its one runner stay in `jobs/`, so training still runs one job at
a time for everyone. Results (what a gallery or a history shows) belong to a viewer: the user with `--auth`, the
browser session without it (one browser never sees another's), everyone with `--shared-workspace`.

Every handler that takes a job id, an identity name or a result from a client looks it up through the asker's
`Workspace`; another user's answers with the same sentence as a missing one, so its existence does not leak.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facestudio.config import DEFAULT_MAX_PIXELS
from facestudio.engine.identities import IdentityStore
from facestudio.errors import DatasetError, InvalidRequestError
from facestudio.jobs import Job, JobStore
from facestudio.jobs.store import missing_job
from facestudio.text import slugify

#: Per-user folders live in `FACESTUDIO_HOME/users/<folder>/`.
USERS_DIR = "users"
#: The viewer of results everyone sees (`--shared-workspace`).
EVERYONE = "*"
MAX_USER_LENGTH = 64
#: Results remembered per viewer (the oldest are forgotten; their files stay in `outputs/`).
MAX_RESULTS = 200


def user_folders(users: Iterable[str]) -> dict[str, str]:
    """User name -> folder name (`slugify`); a name without letters or digits, or two names sharing a folder
    ("Alice" and "alice"), are refused before the studio starts."""
    folders: dict[str, str] = {}
    for user in users:
        folder = slugify(user, MAX_USER_LENGTH)
        if not folder:
            raise InvalidRequestError(f"The user name {user!r} needs at least one letter or digit.", field="auth")
        clash = next((other for other, taken in folders.items() if taken == folder and other != user), None)
        if clash is not None:
            raise InvalidRequestError(f"The user names {clash!r} and {user!r} would share one folder; make them "
                                      "differ in letters or digits.", field="auth")
        folders[user] = folder
    return folders


@dataclass(frozen=True)
class Workspace:
    """What one request may see and where it keeps what it makes.

    Attributes:
        user: the logged-in user (`None` without `--auth`).
        owner: whose stored things these are: the user in a per-user workspace, `None` in the shared one (which
            sees every job).
        root: the workspace's folder (FACESTUDIO_HOME, or `users/<name>/` in it).
        identities: its saved identities (`root/identities`).
        viewer: whose results it sees: `user:<name>`, `session:<hash>` or `EVERYONE`.
    """

    user: str | None
    owner: str | None
    root: Path
    identities: IdentityStore
    viewer: str

    @property
    def shared(self) -> bool:
        return self.owner is None

    def sees(self, job: Job) -> bool:
        return self.owner is None or job.owner == self.owner

    def jobs(self, store: JobStore) -> list[Job]:
        """The jobs this workspace sees, newest first."""
        return [job for job in store.list() if self.sees(job)]

    def job(self, store: JobStore, job_id: str) -> Job:
        """Job `job_id`, if this workspace sees it; another user's is "no job" like a missing one."""
        job = store.get(job_id)
        if not self.sees(job):
            raise missing_job(job_id)
        return job

    def outputs_dir(self) -> Path:
        """Where this workspace's results are kept: `root/outputs/<date>/`."""
        folder = self.root / "outputs" / time.strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def folder(self, text: str) -> Path:
        """A folder a client named (relative to the workspace, or absolute), if it lies inside the workspace
        (symlinks followed); `DatasetError` otherwise. The shared workspace is FACESTUDIO_HOME itself."""
        path = Path(text).expanduser()
        path = path if path.is_absolute() else self.root / path
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            where = "the studio's folder" if self.shared else "your folder"
            raise DatasetError(f"{Path(text).name or text} is outside {where}; give a folder inside it, or upload "
                               "the photos.")
        return resolved


@dataclass(frozen=True)
class Result:
    """One result as a viewer's history keeps it: an unguessable token, the kept file, its caption, its record."""

    token: str
    path: Path
    caption: str = ""
    record: Any = field(default=None, compare=False, repr=False)
    created: float = 0.0


class ResultBook:
    """The results each viewer made while the studio runs (memory only; the files stay in the workspace's
    `outputs/`). A viewer lists and looks up only its own (`Workspace.viewer`); `EVERYONE`'s are everyone's."""

    def __init__(self, limit: int = MAX_RESULTS):
        self.limit = limit
        self._results: dict[str, list[Result]] = {}
        self._lock = threading.Lock()

    def add(self, ws: Workspace, path: str | Path, caption: str = "", record: Any = None) -> Result:
        result = Result(secrets.token_urlsafe(12), Path(path), caption, record, time.time())
        with self._lock:
            kept = self._results.setdefault(ws.viewer, [])
            kept.append(result)
            del kept[:-self.limit]
        return result

    def list(self, ws: Workspace) -> list[Result]:
        """This viewer's results, oldest first."""
        with self._lock:
            return list(self._results.get(ws.viewer, ()))

    def get(self, ws: Workspace, token: object) -> Result:
        """This viewer's result `token`; another viewer's is "no such result" like a missing one."""
        for result in self.list(ws):
            if result.token == token:
                return result
        raise InvalidRequestError("There is no such result; make the image again.")


class Workspaces:
    """The workspace of each request, from gradio's login (`gr.Request.username`) and session.

    Args:
        home: FACESTUDIO_HOME.
        users: the `--auth` user names (none: no login, one shared workspace).
        shared: `--shared-workspace`: everyone sees everything (identities, jobs, results).
        max_pixels: for the identity stores.
    """

    def __init__(self, home: Path, users: Iterable[str] = (), shared: bool = False,
                 max_pixels: int = DEFAULT_MAX_PIXELS):
        self.home = Path(home)
        self.folders = user_folders(users)
        self.per_user = bool(self.folders) and not shared
        self.shared_results = shared
        self._max_pixels = max_pixels
        self._stores: dict[Path, IdentityStore] = {}
        self._lock = threading.Lock()
        self.shared_identities = self._store(self.home)

    def _store(self, root: Path) -> IdentityStore:
        with self._lock:
            if root not in self._stores:
                self._stores[root] = IdentityStore(root, max_pixels=self._max_pixels)
            return self._stores[root]

    def of(self, user: str | None, session: str | None) -> Workspace:
        """The workspace of a request by `user` (gradio's `request.username`) from browser `session`."""
        viewer = EVERYONE if self.shared_results else f"session:{session or 'api'}"
        if not self.per_user:
            return Workspace(user, None, self.home, self.shared_identities, viewer)
        if not isinstance(user, str) or user not in self.folders:
            raise InvalidRequestError("Log in to use the studio.")
        root = self.home / USERS_DIR / self.folders[user]
        return Workspace(user, user, root, self._store(root), f"user:{user}")

    def page(self) -> Workspace:
        """What a page shows before it knows who is looking (when it is built): the shared workspace, or, with
        per-user workspaces, an empty one (each user's lists arrive when their page loads)."""
        if not self.per_user:
            return Workspace(None, None, self.home, self.shared_identities, EVERYONE)
        nobody = self.home / USERS_DIR / ".nobody"  # never a user's folder (those have no dots); never written
        return Workspace(None, "", nobody, IdentityStore(nobody), "nobody")
