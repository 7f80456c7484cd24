"""resnet18_lowres: ResNet-18's blocks behind a stride-1 stem conv (network stride 16)."""

from __future__ import annotations

import pytest
import timm
import torch

from attire.models import create_backbone


def test_last_map_is_one_sixteenth_and_first_stage_sees_half_the_input() -> None:
    model = timm.create_model("resnet18_lowres", num_classes=0).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.forward_features(x).shape == (1, 512, 4, 4)
        stem = model.maxpool(model.act1(model.bn1(model.conv1(x))))
    assert stem.shape == (1, 64, 32, 32)  # resnet18's stem leaves 16x16
    reductions = [info["reduction"] for info in model.feature_info]
    assert reductions == [1, 2, 4, 8, 16]


def test_same_blocks_as_resnet18_only_the_stem_conv_differs() -> None:
    low = timm.create_model("resnet18_lowres", num_classes=10)
    ref = timm.create_model("resnet18", num_classes=10)
    low_shapes = {k: v.shape for k, v in low.state_dict().items()}
    ref_shapes = {k: v.shape for k, v in ref.state_dict().items()}
    assert low_shapes.keys() == ref_shapes.keys()
    differ = {k for k in low_shapes if low_shapes[k] != ref_shapes[k]}
    assert differ == {"conv1.weight"}
    assert low_shapes["conv1.weight"] == (64, 3, 3, 3)


def test_trains_as_an_attire_backbone() -> None:
    model, info = create_backbone("resnet18_lowres")
    assert info.num_features == 512 and info.input_size == (3, 64, 64)
    out = model(torch.randn(2, 3, 48, 48))
    out.sum().backward()
    assert model.conv1.weight.grad is not None and out.shape == (2, 512)


@pytest.mark.parametrize("kwargs", [{"pretrained": True}, {"features_only": True}])
def test_unsupported_options_fail_clearly(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="resnet18_lowres"):
        timm.create_model("resnet18_lowres", **kwargs)
