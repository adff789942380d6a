"""The model registry, what users may type as a model, the download cache, and its offline behaviour."""

from __future__ import annotations

from pathlib import Path

import pytest

from facestudio.engine import ModelHub, ModelRegistry, resolve_source
from facestudio.engine.hub import DownloadPlan, RemoteFile, _forwarding_tqdm
from facestudio.errors import DownloadError, ModelNotAvailableError, UnknownModelError
from tests.engine.conftest import make_manager


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry.default()


def test_registry_lists_the_release_models_and_pairs_each_base_with_its_adapter(registry):
    assert registry.defaults == {"base_model": "majicmix", "face_encoder": "transface-s", "controlnet": "openpose",
                                 "pipeline_config": "sd15-config", "clip": "clip-vit-l14"}
    pairs = {r.key: r.adapter for r in registry.of_kind("base_model")}
    assert pairs == {"majicmix": "fact-majicmix", "film": "fact-film"}
    assert registry.get("fact-film").file == "adapter_film_mask_large_new_reg001_faceshuffle_00290001.ckpt"
    assert registry.get("transface-s").file == "ms1mv2_model_TransFace_S.pt"
    # every size is shown before a download; the portrait LoRA's is not published, so the hub is asked for it
    assert all(r.size_bytes > 0 for r in registry.records.values() if r.key != "portrait-lora")
    with pytest.raises(UnknownModelError, match=r"known models: .*majicmix"):
        registry.get("sdxl")


def test_default_models_are_named_in_the_registry_only(registry):
    """Code asks `ModelRegistry.default_for(kind)`; no module under facestudio/ spells a registry key itself."""
    import ast

    from tests.conftest import REPO_ROOT

    spelled = []
    for path in sorted((REPO_ROOT / "facestudio").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Constant) and node.value in registry.records:
                spelled.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.value!r}")
    assert spelled == []
    assert registry.default_for("face_encoder") == "transface-s"
    with pytest.raises(UnknownModelError, match="no default fact adapter"):
        registry.default_for("fact_adapter")


def test_every_way_to_name_a_model(registry, tmp_path):
    assert resolve_source("film", "base_model", registry).record.key == "film"
    folder = tmp_path / "my-model"
    folder.mkdir()
    local = resolve_source(str(folder), "base_model", registry)
    assert local.path == folder.resolve() and not local.is_single_file
    hf = resolve_source("hf:owner/name@v2", "base_model", registry).record
    assert (hf.hub, hf.repo, hf.revision) == ("huggingface", "owner/name", "v2")
    assert "unet/diffusion_pytorch_model.safetensors" in hf.allow_patterns
    bare = resolve_source("owner/name", "controlnet", registry).record
    assert bare.hub == "huggingface" and bare.allow_patterns == ("config.json", "diffusion_pytorch_model.safetensors")
    ms = resolve_source("modelscope:owner/name/sub/adapter.ckpt", "fact_adapter", registry).record
    assert (ms.hub, ms.repo, ms.file) == ("modelscope", "owner/name", "sub/adapter.ckpt")


@pytest.mark.parametrize(
    ("spec", "message"),
    [("fact-film", "is a fact adapter, not a base model"), ("./missing.safetensors", "does not exist"),
     ("just words", "not a known model")],
)
def test_names_that_are_no_model_are_explained(registry, spec, message):
    with pytest.raises(UnknownModelError, match=message):
        resolve_source(spec, "base_model", registry)


def test_custom_base_model_gets_the_default_adapter(registry, tmp_path):
    custom = resolve_source(str(tmp_path), "base_model", registry)
    assert registry.adapter_for(custom).key == "fact-majicmix"


def test_offline_missing_model_names_the_file_and_the_download_command(registry, tmp_path):
    hub = ModelHub(tmp_path, offline=True)
    record = registry.get("fact-film")
    assert hub.cached_path(record) is None
    with pytest.raises(ModelNotAvailableError) as info:
        hub.fetch(record)
    message = str(info.value)
    assert "adapter_film_mask_large_new_reg001_faceshuffle_00290001.ckpt" in message
    assert "python -m facestudio download fact-film" in message and "downloads are off" in message
    plan = hub.plan(record)
    assert not plan.exact and plan.missing_bytes == record.size_bytes and "about 1.0 GB" in plan.describe()


def _fake_hf_cache(cache: Path, repo: str, filename: str, data: bytes) -> Path:
    """The layout huggingface_hub keeps: models--owner--name/{refs/main, snapshots/<commit>/<file>}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit)
    target = root / "snapshots" / commit / filename
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def test_cached_hub_file_is_found_offline(registry, tmp_path):
    hub = ModelHub(tmp_path, offline=True)
    record = resolve_source("hf:owner/adapters/fact.safetensors", "fact_adapter", registry).record
    target = _fake_hf_cache(hub.cache_dir("huggingface"), "owner/adapters", "fact.safetensors", b"weights")
    assert hub.cached_path(record) == target.resolve() or hub.cached_path(record) == target
    assert hub.fetch(record) == hub.cached_path(record)


def test_download_reports_progress_in_bytes_and_failures_say_how_to_resume(registry, tmp_path, monkeypatch):
    import huggingface_hub

    hub = ModelHub(tmp_path, offline=False)
    record = resolve_source("hf:owner/adapters/fact.safetensors", "fact_adapter", registry).record
    plan = DownloadPlan(record, (RemoteFile("fact.safetensors", 1000, cached=False),), exact=True)

    def fake_download(repo_id, filename, revision=None, cache_dir=None, tqdm_class=None, local_files_only=False,
                      **kwargs):
        if local_files_only:  # the cache lookup: what the real client does without a network
            found = list(Path(cache_dir).glob(f"models--*/snapshots/*/{filename}"))
            if not found:
                raise FileNotFoundError(filename)
            return str(found[0])
        bar = tqdm_class(total=1000)
        bar.update(400)
        bar.update(600)
        return str(_fake_hf_cache(Path(cache_dir), repo_id, filename, b"x" * 1000))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    events = []
    path = hub.fetch(record, events.append, plan=plan)
    assert path.read_bytes() == b"x" * 1000
    assert [e.done_bytes for e in events] == [400, 1000, 1000] and events[-1].finished

    def broken(*args, **kwargs):
        raise ConnectionError("connection reset by peer")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", broken)
    other = resolve_source("hf:owner/other/fact.safetensors", "fact_adapter", registry).record
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        hub.fetch(other, plan=DownloadPlan(other, (RemoteFile("fact.safetensors", 10, False),), exact=True))


def test_forwarding_tqdm_is_silent_and_cumulative():
    events = []
    bar = _forwarding_tqdm(events.append, "m", "f", done=100, total=300)(total=200)
    bar.update(50)
    bar.update(150)
    bar.close()
    assert [e.done_bytes for e in events] == [150, 300]


def test_manager_that_may_not_download_says_so(tiny_studio, tmp_path):
    from facestudio.engine import EngineSettings, ModelManager, select_device

    manager = ModelManager(EngineSettings(home=tmp_path, placement=select_device("cpu"), allow_download=False,
                                          offline=False))
    with pytest.raises(ModelNotAvailableError, match="downloads were not allowed"):
        manager.adapted_base("majicmix")
    plans = make_manager(tiny_studio, tmp_path).needed_downloads([manager.source("base_model", "film")])
    assert [p.record.key for p in plans] == ["film"]


def test_half_downloaded_base_model_does_not_count_as_cached(registry, tmp_path):
    hub = ModelHub(tmp_path, offline=True)
    record = resolve_source("hf:owner/sd15-finetune", "base_model", registry).record
    cache = hub.cache_dir("huggingface")
    _fake_hf_cache(cache, "owner/sd15-finetune", "model_index.json", b"{}")
    assert hub.cached_path(record) is None
    for part in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        _fake_hf_cache(cache, "owner/sd15-finetune", f"{part}/config.json", b"{}")
    assert hub.cached_path(record) is not None and (hub.cached_path(record) / "unet").is_dir()


def test_download_without_names_fetches_the_registry_defaults(registry, tmp_path, capsys):
    """The default base model, its adapter and the default face encoder, as the registry names them."""
    from facestudio.cli import build_parser
    from facestudio.config import StudioSettings

    args = build_parser(StudioSettings(home=tmp_path, offline=True)).parse_args(["download", "--yes"])
    assert args.handler(args) == 1  # offline: each is named, none can be fetched
    planned = [line.split()[0] for line in capsys.readouterr().out.splitlines() if "to download" in line]
    base = registry.default_for("base_model")
    assert planned == [base, registry.get(base).adapter, registry.default_for("face_encoder")]
