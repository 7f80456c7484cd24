"""DRN-C/D: the paper's sizes, the reference's layout, a 1/8 feature map, and timm integration."""

from __future__ import annotations

import pytest
import timm
import torch
from timm.layers import DropPath
from timm.models import group_parameters
from torch import nn

import attire.models  # noqa: F401  (registers the DRNs)
from attire.models.drn import DRN, BasicBlock, Bottleneck

# Parameter counts with the 1000-class 1x1-conv classifier. Paper (Table 1, rounded to 0.1M) and
# the exact count, which equals the authors' reference (fyu/drn) whose state dicts load as-is.
PAPER = {
    "drn_c_26": (21.1, 21_126_584),
    "drn_c_42": (31.2, 31_234_744),
    "drn_d_54": (35.8, 35_809_176),
    "drn_d_105": (54.8, 54_801_304),
}
TINY = ["drn_c_tiny", "drn_d_tiny"]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(PAPER))
def test_parameter_count_matches_paper(name: str) -> None:
    model = timm.create_model(name, device="meta")
    paper, exact = PAPER[name]
    assert round(n_params(model) / 1e6, 1) == paper
    assert n_params(model) == exact
    assert model.num_features == 512


@pytest.mark.parametrize("name", list(PAPER))
def test_full_size_feature_map_is_one_eighth(name: str) -> None:
    """Shapes propagate on the meta device, so the real networks are checked at 224 px for free."""
    model = timm.create_model(name, num_classes=1000, device="meta")
    x = torch.empty(2, 3, 224, 224, device="meta")
    assert model.forward_features(x).shape == (2, 512, 28, 28)
    assert model(x).shape == (2, 1000)
    assert model.pretrained_cfg["pool_size"] == (28, 28)


def _dilations(layer: nn.Module) -> set[int]:
    return {
        m.dilation[0] for m in layer.modules() if isinstance(m, nn.Conv2d) and m.kernel_size[0] == 3
    }


@pytest.mark.parametrize("name", list(PAPER) + TINY)
def test_layout_follows_the_paper(name: str) -> None:
    model = timm.create_model(name, device="meta")
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert [_dilations(getattr(model, f"layer{i}")) for i in (3, 4, 5, 6, 7, 8)] == [
        {1},
        {1},
        {2},
        {4},
        {2},
        {1},
    ]
    # Strides only in the stem side: layers 2, 3, 4 halve the map, nothing after layer 4 does.
    for i, stride in [(5, 1), (6, 1), (7, 1), (8, 1)]:
        layer = getattr(model, f"layer{i}")
        assert {m.stride[0] for m in layer.modules() if isinstance(m, nn.Conv2d)} == {stride}
    if model.arch == "C":
        assert isinstance(model.conv1, nn.Conv2d) and model.conv1.kernel_size == (7, 7)
        assert all(isinstance(b, BasicBlock) and b.residual for b in model.layer1)
        assert [b.residual for b in (*model.layer7, *model.layer8)] == [False, False]
        assert all(b.downsample is None for b in (*model.layer7, *model.layer8))
    else:
        assert model.layer0[0].kernel_size == (7, 7)
        plain = (model.layer1, model.layer2, model.layer7, model.layer8)
        assert not any(isinstance(m, (BasicBlock, Bottleneck)) for layer in plain for m in layer)


def test_state_dict_uses_reference_names() -> None:
    """The names the authors' checkpoints use, so their .pth files load without renaming."""
    c = timm.create_model("drn_c_26", device="meta").state_dict()
    for key in ("conv1.weight", "bn1.running_var", "layer1.0.conv2.weight"):
        assert key in c
    assert c["layer2.0.downsample.0.weight"].shape == (32, 16, 1, 1)
    assert c["layer8.0.conv2.weight"].shape == (512, 512, 3, 3)
    assert c["fc.weight"].shape == (1000, 512, 1, 1)
    d = timm.create_model("drn_d_54", device="meta").state_dict()
    assert d["layer0.0.weight"].shape == (16, 3, 7, 7)
    assert d["layer2.0.weight"].shape == (32, 16, 3, 3)
    assert d["layer3.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert d["layer7.0.weight"].shape == (512, 2048, 3, 3)
    assert d["layer8.1.running_mean"].shape == (512,)


@pytest.mark.parametrize("name", ["drn_c_26", "drn_d_54", *TINY])
def test_forward_backward_on_cpu(name: str) -> None:
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    assert model.forward_features(x).shape == (2, model.num_features, 4, 4)
    logits = model(x)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    logits.logsumexp(1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_timm_api_head_reset_and_pre_logits() -> None:
    model = timm.create_model("drn_c_tiny", num_classes=7).eval()
    x = torch.randn(1, 3, 64, 64)
    assert isinstance(model.get_classifier(), nn.Conv2d)  # 1x1 conv, as in the reference
    assert model.forward_head(model.forward_features(x), pre_logits=True).shape == (1, 16)
    model.reset_classifier(0)
    assert model(x).shape == (1, 16)
    model.reset_classifier(3)
    assert model(x).shape == (1, 3)
    model.reset_classifier(3, global_pool="")
    assert model(x).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("name", TINY)
def test_feature_info_and_features_only(name: str) -> None:
    model = timm.create_model(name)
    exp = 4 if name == "drn_d_tiny" else 1
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4, 8, 8, 8, 8, 8]
    assert [f["num_chs"] for f in model.feature_info] == [
        8,
        8,
        *(c * exp for c in (8, 16, 16, 16)),
        16,
        16,
    ]
    feats = timm.create_model(name, features_only=True, out_indices=(1, 3, 7))
    outs = feats(torch.randn(1, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(1, 8, 32, 32), (1, 16 * exp, 8, 8), (1, 16, 8, 8)]


def test_drop_path_grows_linearly_over_residual_blocks() -> None:
    model = timm.create_model("drn_c_42", drop_path_rate=0.2, device="meta")
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    # C: layers 1-6 are residual (1+1+3+4+6+3 = 18 blocks); the first gets rate 0, so no DropPath.
    assert len(rates) == 17
    assert rates == sorted(rates) and rates[-1] == pytest.approx(0.2)
    assert all(isinstance(b.drop_path, nn.Identity) for b in (*model.layer7, *model.layer8))
    # reference init: with zero-init the residual branches are 0 and dropping them changes nothing
    tiny = timm.create_model("drn_c_tiny", drop_path_rate=0.5, zero_init_last=False).train()
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(1)
    a = tiny(x)
    torch.manual_seed(2)
    assert not torch.allclose(a, tiny(x))
    tiny.eval()
    assert torch.allclose(tiny(x), tiny(x))


def test_grad_checkpointing_gives_same_output_and_grads() -> None:
    torch.manual_seed(0)
    model = timm.create_model("drn_d_tiny", num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    plain = model(x)
    plain.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    model.set_grad_checkpointing(True)
    ckpt = model(x)
    ckpt.sum().backward()
    assert torch.allclose(plain, ckpt) and torch.allclose(grad, x.grad)


def test_group_matcher_covers_every_parameter() -> None:
    model = timm.create_model("drn_c_tiny")
    groups = group_parameters(model, model.group_matcher())
    grouped = [n for names in groups.values() for n in names]
    assert sorted(grouped) == sorted(n for n, _ in model.named_parameters())
    assert groups[0] == ["conv1.weight", "bn1.weight", "bn1.bias"]


def test_registered_with_timm_and_bad_config_rejected() -> None:
    assert {"drn_c_26", "drn_c_42", "drn_d_54", "drn_d_105", *TINY} <= set(timm.list_models("drn*"))
    model = timm.create_model("drn_d_54", num_classes=11, device="meta")
    assert isinstance(model, DRN) and model.fc.out_channels == 11
    assert model.default_cfg["first_conv"] == "layer0.0"
    with pytest.raises(ValueError, match="arch"):
        DRN(BasicBlock, [1] * 8, arch="E")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="8 positive"):
        DRN(BasicBlock, [1] * 7, arch="C")


@pytest.mark.parametrize("name", TINY)
def test_residual_blocks_start_as_their_shortcut_unless_reference_init(name: str) -> None:
    """zero_init_last zeroes each residual block's last BN (de-gridding blocks keep theirs), so a
    block adds nothing at init; reference-init leaves every BN weight at 1."""
    x = torch.randn(2, 16, 8, 8)
    for zero in (True, False):
        model = timm.create_model(name, zero_init_last=zero).eval()
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]
        residual = [b for b in blocks if getattr(b, "residual", True)]
        plain = [b for b in blocks if not getattr(b, "residual", True)]
        assert residual
        for b in residual:
            last = b.bn3 if isinstance(b, Bottleneck) else b.bn2
            assert torch.all(last.weight == 0) == zero
            if zero and b.downsample is None and b.conv1.in_channels == x.shape[1]:
                with torch.no_grad():  # identity shortcut: the block is relu(x)
                    assert torch.equal(b(x.clone()), torch.relu(x))
        for b in plain:  # no shortcut to fall back on: zeroing would cut the network
            assert torch.all(b.bn2.weight == 1)
