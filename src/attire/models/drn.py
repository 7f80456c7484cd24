"""Dilated Residual Networks (Yu, Koltun, Funkhouser, CVPR 2017) as timm models.

DRNs keep a 1/8 resolution feature map to the end: stages 5 and 6 trade their stride for dilation
(2 and 4), and layers 7-8 remove the gridding artefacts that dilation leaves. Fine attributes of a
garment (a placket, a print) stay visible at 1/8 where a 1/32 ResNet map has blurred them.

Module and parameter names follow the authors' reference implementation (github.com/fyu/drn), so
their ImageNet checkpoints load with ``create_backbone(name, pretrained="path/to/file.pth")``.
Importing this module registers ``drn_c_26``, ``drn_c_42``, ``drn_d_54``, ``drn_d_105`` and the
test-sized ``drn_c_tiny`` / ``drn_d_tiny`` with timm.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, create_classifier
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._manipulate import checkpoint_seq
from torch import nn

__all__ = ["DRN", "BasicBlock", "Bottleneck"]

Arch = Literal["C", "D"]
DEFAULT_CHANNELS = (16, 32, 64, 128, 256, 512, 512, 512)


def _conv3x3(in_chs: int, out_chs: int, stride: int = 1, dilation: int = 1, **dd: Any) -> nn.Conv2d:
    """3x3 convolution whose padding keeps the size for any dilation."""
    return nn.Conv2d(
        in_chs,
        out_chs,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
        **dd,
    )


class BasicBlock(nn.Module):
    """Two 3x3 convolutions; without ``residual`` it is the C variant's de-gridding block."""

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        dilation: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        residual: bool = True,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv1 = _conv3x3(in_chs, planes, stride, dilation[0], **dd)
        self.bn1 = nn.BatchNorm2d(planes, **dd)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes, 1, dilation[1], **dd)
        self.bn2 = nn.BatchNorm2d(planes, **dd)
        self.downsample = downsample
        self.residual = residual
        self.drop_path = DropPath(drop_path) if drop_path > 0 and residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            shortcut = x if self.downsample is None else self.downsample(x)
            out = self.drop_path(out) + shortcut
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, dilated 3x3 (carrying the stride), 1x1 expand by 4, plus the shortcut."""

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        dilation: tuple[int, int] = (1, 1),
        downsample: nn.Module | None = None,
        residual: bool = True,
        drop_path: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not residual:
            raise ValueError("Bottleneck blocks are always residual in DRN")
        dd = {"device": device, "dtype": dtype}
        out_chs = planes * self.expansion
        self.conv1 = nn.Conv2d(in_chs, planes, kernel_size=1, bias=False, **dd)
        self.bn1 = nn.BatchNorm2d(planes, **dd)
        # The reference dilates this 3x3 by dilation[1] in every block, the first one included.
        self.conv2 = _conv3x3(planes, planes, stride, dilation[1], **dd)
        self.bn2 = nn.BatchNorm2d(planes, **dd)
        self.conv3 = nn.Conv2d(planes, out_chs, kernel_size=1, bias=False, **dd)
        self.bn3 = nn.BatchNorm2d(out_chs, **dd)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(out) + shortcut)


Block = type[BasicBlock] | type[Bottleneck]


class DRN(nn.Module):
    """A DRN-C or DRN-D network: eight layers, output stride 8, global pool and 1x1-conv classifier.

    ``layers`` gives the block (or, for D's layers 1-2 and 7-8, convolution) count of each of the
    eight layers; ``channels`` their widths before the block expansion.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        arch: Arch,
        channels: Sequence[int] = DEFAULT_CHANNELS,
        num_classes: int = 1000,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if arch not in ("C", "D"):
            raise ValueError(f"arch must be 'C' or 'D', got {arch!r}")
        if len(layers) != 8 or len(channels) != 8 or min(layers) < 1:
            raise ValueError(
                f"DRN needs 8 positive layer counts and 8 widths, got {layers}, {channels}"
            )
        dd = {"device": device, "dtype": dtype}
        self.arch = arch
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.grad_checkpointing = False
        self._in_chs = channels[0]
        # Stochastic depth grows linearly over the residual blocks (C's layers 1-2 are residual).
        first = 0 if arch == "C" else 2
        n_residual = sum(layers[first:6])
        rates = [drop_path_rate * i / max(n_residual - 1, 1) for i in range(n_residual)]
        dpr = {i: rates[sum(layers[first:i]) : sum(layers[first : i + 1])] for i in range(first, 6)}

        if arch == "C":
            self.conv1 = nn.Conv2d(
                in_chans, channels[0], kernel_size=7, padding=3, bias=False, **dd
            )
            self.bn1 = nn.BatchNorm2d(channels[0], **dd)
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = self._make_layer(BasicBlock, channels[0], layers[0], dpr=dpr[0], **dd)
            self.layer2 = self._make_layer(
                BasicBlock, channels[1], layers[1], stride=2, dpr=dpr[1], **dd
            )
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(in_chans, channels[0], kernel_size=7, padding=3, bias=False, **dd),
                nn.BatchNorm2d(channels[0], **dd),
                nn.ReLU(inplace=True),
            )
            self.layer1 = self._make_conv_layers(channels[0], layers[0], **dd)
            self.layer2 = self._make_conv_layers(channels[1], layers[1], stride=2, **dd)
        self.layer3 = self._make_layer(block, channels[2], layers[2], stride=2, dpr=dpr[2], **dd)
        self.layer4 = self._make_layer(block, channels[3], layers[3], stride=2, dpr=dpr[3], **dd)
        self.layer5 = self._make_layer(block, channels[4], layers[4], dilation=2, dpr=dpr[4], **dd)
        self.layer6 = self._make_layer(block, channels[5], layers[5], dilation=4, dpr=dpr[5], **dd)
        # De-gridding: dilation 2 then 1, with no shortcut that would carry the grid through.
        if arch == "C":
            self.layer7 = self._make_layer(
                BasicBlock, channels[6], layers[6], dilation=2, residual=False, **dd
            )
            self.layer8 = self._make_layer(
                BasicBlock, channels[7], layers[7], dilation=1, residual=False, **dd
            )
        else:
            self.layer7 = self._make_conv_layers(channels[6], layers[6], dilation=2, **dd)
            self.layer8 = self._make_conv_layers(channels[7], layers[7], dilation=1, **dd)

        exp = block.expansion
        widths = [
            channels[0],
            channels[1],
            channels[2] * exp,
            channels[3] * exp,
            channels[4] * exp,
            channels[5] * exp,
            channels[6],
            channels[7],
        ]
        reductions = [1, 2, 4, 8, 8, 8, 8, 8]
        self.feature_info = [
            {"num_chs": c, "reduction": r, "module": f"layer{i + 1}"}
            for i, (c, r) in enumerate(zip(widths, reductions, strict=True))
        ]
        self.num_features = channels[7]
        self.global_pool, self.head_drop, self.fc = create_classifier(
            self.num_features,
            num_classes,
            pool_type=global_pool,
            use_conv=True,
            drop_rate=drop_rate,
            **dd,
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        """He (fan-out) init of every convolution, the 1x1 classifier too, as in the reference.

        ``zero_init_last`` (timm's ResNet default, not the reference's) zeroes the last BN of
        every residual block, so each starts as its shortcut. Without it, trained from scratch,
        DRN-C-26 hardly learnt colour: 27% after 60 steps on a toy task of 8 colours where
        ResNet-18 reached 81% and this init 75% (bench/drn_init.py; docs/BENCHMARKS.md).
        """
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if isinstance(m, BasicBlock) and m.residual:
                    nn.init.zeros_(m.bn2.weight)
                elif isinstance(m, Bottleneck):
                    nn.init.zeros_(m.bn3.weight)

    def _make_layer(
        self,
        block: Block,
        planes: int,
        blocks: int,
        stride: int = 1,
        dilation: int = 1,
        residual: bool = True,
        dpr: Sequence[float] = (),
        **dd: Any,
    ) -> nn.Sequential:
        """A stage of blocks; the first may stride and gets a 1x1 projection shortcut.

        ``dpr`` holds each block's stochastic-depth rate (empty: none, as for de-gridding blocks).
        """
        out_chs = planes * block.expansion
        downsample = None
        if residual and (stride != 1 or self._in_chs != out_chs):
            downsample = nn.Sequential(
                nn.Conv2d(self._in_chs, out_chs, kernel_size=1, stride=stride, bias=False, **dd),
                nn.BatchNorm2d(out_chs, **dd),
            )
        stage = []
        for i in range(blocks):
            stage.append(
                block(
                    self._in_chs,
                    planes,
                    stride=stride if i == 0 else 1,
                    dilation=(dilation, dilation),
                    downsample=downsample if i == 0 else None,
                    residual=residual,
                    drop_path=dpr[i] if dpr else 0.0,
                    **dd,
                )
            )
            self._in_chs = out_chs
        return nn.Sequential(*stage)

    def _make_conv_layers(
        self, channels: int, convs: int, stride: int = 1, dilation: int = 1, **dd: Any
    ) -> nn.Sequential:
        """DRN-D's plain conv-BN-ReLU layers (no shortcut), used at both ends of the network."""
        modules: list[nn.Module] = []
        for i in range(convs):
            modules += [
                _conv3x3(self._in_chs, channels, stride if i == 0 else 1, dilation, **dd),
                nn.BatchNorm2d(channels, **dd),
                nn.ReLU(inplace=True),
            ]
            self._in_chs = channels
        return nn.Sequential(*modules)

    def _layers(self) -> list[nn.Module]:
        """The eight layers in order, after the stem."""
        return [getattr(self, f"layer{i}") for i in range(1, 9)]

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Parameter groups for timm's layer-wise learning-rate decay, stem first."""
        stem = r"^conv1|^bn1" if self.arch == "C" else r"^layer0"
        blocks = r"^layer(\d+)" if coarse else [(r"^layer(\d+)\.(\d+)", None)]
        return {"stem": stem, "blocks": blocks}

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute layer activations in backward: DRN's 1/8 maps are memory-hungry."""
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Swap the classifier; ``num_classes=0`` leaves the pooled features as the output."""
        last = next(self.layer8.parameters())
        dd = {"device": last.device, "dtype": last.dtype}
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(
            self.num_features, num_classes, pool_type=global_pool, use_conv=True, **dd
        )
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.flatten = nn.Flatten(1) if global_pool else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The 1/8 resolution feature map, ``num_features`` channels."""
        x = self.relu(self.bn1(self.conv1(x))) if self.arch == "C" else self.layer0(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            return checkpoint_seq(self._layers(), x)
        for layer in self._layers():
            x = layer(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Pool, drop out, classify; ``pre_logits`` stops before the classifier."""
        x = self.head_drop(self.global_pool(x))
        if pre_logits:
            return self.flatten(x)
        return self.flatten(self.fc(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _create_drn(variant: str, pretrained: bool = False, **kwargs: Any) -> DRN:
    return build_model_with_cfg(
        DRN,
        variant,
        pretrained,
        **kwargs,
    )


def _cfg(first_conv: str, **kwargs: Any) -> dict[str, Any]:
    """No published timm weights: the reference's ImageNet preprocessing, for a file to match."""
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (28, 28),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": first_conv,
        "classifier": "fc",
        "paper_ids": "arXiv:1705.09914",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        "drn_c_26": _cfg("conv1"),
        "drn_c_42": _cfg("conv1"),
        "drn_d_54": _cfg("layer0.0"),
        "drn_d_105": _cfg("layer0.0"),
        "drn_c_tiny": _cfg("conv1", input_size=(3, 64, 64), pool_size=(8, 8)),
        "drn_d_tiny": _cfg("layer0.0", input_size=(3, 64, 64), pool_size=(8, 8)),
    }
)

# Widths of the test-sized networks: every structural feature of the full ones, few weights.
# At least 8 everywhere: torch 2.14.1's oneDNN backward of a channels-last 1x1 stride-2 conv with
# fewer than 8 input channels corrupts the heap on AVX2-only CPUs (seen on an AMD EPYC, Dec 2026).
TINY_CHANNELS = (8, 8, 8, 16, 16, 16, 16, 16)


@register_model
def drn_c_26(pretrained: bool = False, **kwargs: Any) -> DRN:
    """DRN-C-26: ResNet-18's blocks, dilated, with residual stem blocks and de-gridding."""
    return _create_drn(
        "drn_c_26",
        pretrained,
        block=BasicBlock,
        layers=[1, 1, 2, 2, 2, 2, 1, 1],
        arch="C",
        **kwargs,
    )


@register_model
def drn_c_42(pretrained: bool = False, **kwargs: Any) -> DRN:
    """DRN-C-42: ResNet-34's blocks, dilated."""
    return _create_drn(
        "drn_c_42",
        pretrained,
        block=BasicBlock,
        layers=[1, 1, 3, 4, 6, 3, 1, 1],
        arch="C",
        **kwargs,
    )


@register_model
def drn_d_54(pretrained: bool = False, **kwargs: Any) -> DRN:
    """DRN-D-54: ResNet-50's bottlenecks, dilated, with D's plain-conv stem and de-gridding."""
    return _create_drn(
        "drn_d_54",
        pretrained,
        block=Bottleneck,
        layers=[1, 1, 3, 4, 6, 3, 1, 1],
        arch="D",
        **kwargs,
    )


@register_model
def drn_d_105(pretrained: bool = False, **kwargs: Any) -> DRN:
    """DRN-D-105: ResNet-101's bottlenecks, dilated."""
    return _create_drn(
        "drn_d_105",
        pretrained,
        block=Bottleneck,
        layers=[1, 1, 3, 4, 23, 3, 1, 1],
        arch="D",
        **kwargs,
    )


@register_model
def drn_c_tiny(pretrained: bool = False, **kwargs: Any) -> DRN:
    """A few-thousand-weight DRN-C for fast tests (one block per layer, narrow)."""
    kwargs.setdefault("channels", TINY_CHANNELS)
    return _create_drn(
        "drn_c_tiny", pretrained, block=BasicBlock, layers=[1] * 8, arch="C", **kwargs
    )


@register_model
def drn_d_tiny(pretrained: bool = False, **kwargs: Any) -> DRN:
    """A small DRN-D with bottlenecks for fast tests."""
    kwargs.setdefault("channels", TINY_CHANNELS)
    return _create_drn(
        "drn_d_tiny", pretrained, block=Bottleneck, layers=[1] * 8, arch="D", **kwargs
    )
