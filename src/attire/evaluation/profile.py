"""What a model costs: parameters, FLOPs, latency, throughput and memory, measured on this machine.

The backbone benchmark, ``attire profile`` and ``attire compare`` all read these numbers, so every
measurement says how it was taken (iterations actually run, what the memory figure means): CPU
timings on a shared machine are noisy, and a huge model on CPU gets fewer iterations, not hours.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import gc
import platform
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torch.nn.functional as F
from rich.table import Table
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from attire.errors import AttireError
from attire.inference.predictor import resolve_device
from attire.models.checkpoint import load_checkpoint
from attire.models.multitask import EMBEDDING, ModelConfig, MultiTaskModel
from attire.taxonomy import Taxonomy, load_taxonomy

__all__ = [
    "FLOPS_NOTE",
    "ProfileResult",
    "Timing",
    "count_flops",
    "describe_device",
    "malloc_name",
    "markdown_table",
    "profile_backbone",
    "profile_checkpoint",
    "profile_model",
    "profile_target",
    "rich_table",
]

FLOPS_NOTE = (
    "forward FLOPs per image from torch FlopCounterMode: matmul/conv/attention ops only "
    "(no BN, activations, pooling), a multiply-add counts as 2 FLOPs"
)
_CUDA_MEMORY = "CUDA max_memory_allocated growth over the tensors already allocated"
_CPU_MEMORY = (
    "peak process RSS growth (Linux VmHWM after clear_refs): includes allocator overhead and "
    "caching, and misses memory the allocator kept from earlier steps"
)
_NO_MEMORY = "unavailable: the peak RSS can only be reset on Linux (/proc/self/clear_refs)"
_STEPS_PER_TRAIN_STEP = 3  # a training step costs about a forward plus a twice-as-dear backward


@dataclass(frozen=True)
class Timing:
    """One time-bounded measurement: ``iters`` timed calls on batches of ``batch_size``."""

    batch_size: int
    iters: int  # timed calls actually run
    warmup: int  # untimed warm-up calls actually run
    seconds: float  # the timed calls only
    wall_s: float  # warm-up plus timed calls
    p50_ms: float  # per call (per batch)
    p95_ms: float
    truncated: bool  # max_seconds stopped it before the requested iterations
    peak_memory_mb: float | None  # see ProfileResult.memory_measure

    @property
    def throughput(self) -> float:
        """Images per second over the timed calls."""
        return self.batch_size * self.iters / self.seconds

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput}


@dataclass(frozen=True)
class ProfileResult:
    """Cost of one model at one input size on one device."""

    name: str
    input_size: int
    params: int
    gflops: float  # per image, forward only; see FLOPS_NOTE
    device: str
    precision: str  # "fp32" or "bf16 autocast"
    channels_last: bool
    inference: tuple[Timing, ...]
    train: Timing | None
    memory_measure: str  # what the peak_memory_mb figures mean on this device
    notes: tuple[str, ...] = field(default=())  # what was skipped or shrunk to stay in time

    @property
    def latency(self) -> Timing | None:
        """The batch-1 inference measurement (None when batch 1 was not measured)."""
        return next((t for t in self.inference if t.batch_size == 1), None)

    @property
    def best(self) -> Timing | None:
        """The inference measurement with the highest throughput."""
        return max(self.inference, key=lambda t: t.throughput, default=None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: every measurement plus the headline figures and how they were counted."""
        lat, best = self.latency, self.best
        return {
            "name": self.name,
            "input_size": self.input_size,
            "params": self.params,
            "gflops": self.gflops,
            "flops_note": FLOPS_NOTE,
            "device": self.device,
            "precision": self.precision,
            "channels_last": self.channels_last,
            "latency_b1_p50_ms": lat.p50_ms if lat else None,
            "latency_b1_p95_ms": lat.p95_ms if lat else None,
            "best_throughput": best.throughput if best else None,
            "best_batch_size": best.batch_size if best else None,
            "train_throughput": self.train.throughput if self.train else None,
            "train_batch_size": self.train.batch_size if self.train else None,
            "inference": [t.to_dict() for t in self.inference],
            "train": self.train.to_dict() if self.train else None,
            "memory_measure": self.memory_measure,
            "notes": list(self.notes),
        }


def profile_model(
    model: nn.Module,
    input_size: int,
    *,
    name: str | None = None,
    device: str | torch.device = "cpu",
    batch_sizes: Sequence[int] = (1, 8, 32),
    warmup: int = 3,
    iters: int = 30,
    max_seconds: float = 10.0,
    train: bool = False,
    train_batch_size: int = 32,
    channels_last: bool = True,
    bf16: bool = False,
    threads: int | None = None,
    in_chans: int = 3,
    progress: Callable[[str], None] | None = None,
) -> ProfileResult:
    """Measure ``model`` on random ``in_chans`` x ``input_size`` x ``input_size`` images.

    Each measurement (one per batch size, plus training) runs up to ``warmup`` untimed and
    ``iters`` timed calls, and stops early rather than pass ``max_seconds``; ``Timing.iters``
    says how many ran. At least one timed call always runs, so a single call slower than the
    budget overruns it. A batch size whose warm-up and timed call are predicted (from the
    smaller batches) not to fit is skipped, and the training batch is halved (down to 2) until
    two steps are predicted to fit; ``notes`` lists both. Training (``train=True``)
    runs forward + backward + an SGD step with cross-entropy on random labels, on a copy of the
    model so the caller's weights and BN statistics stay as they were. The model is moved to
    ``device`` (and channels-last) in place. ``threads`` sets torch's CPU threads for the run.
    """
    _check_args(input_size, batch_sizes, warmup, iters, max_seconds, train_batch_size)
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AttireError(f"device {dev} requested but torch.cuda.is_available() is False")
    report = progress or (lambda _: None)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    was_training = model.training
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        model.to(device=dev, memory_format=fmt).eval()
        described = describe_device(dev)  # while `threads` is in force
        report("counting FLOPs")
        flops = count_flops(model, input_size, in_chans=in_chans, device=dev)
        make_input = _input_factory(input_size, in_chans, dev, fmt)
        autocast = _autocast(dev, bf16)
        notes: list[str] = []
        inference: list[Timing] = []
        for bs in sorted(set(batch_sizes)):
            predicted = _predicted_call_s(inference, bs)
            if predicted * _calls_at_least(warmup) > max_seconds:
                notes.append(f"inference batch {bs} skipped: a call would take ~{predicted:.1f} s")
                continue
            report(f"inference batch {bs}")
            x = make_input(bs)

            def infer(x: torch.Tensor = x) -> None:
                with torch.inference_mode(), autocast():
                    model(x)

            inference.append(_measure(infer, dev, bs, warmup, iters, max_seconds))
            del x
        train_timing = None
        if train:
            bs = _fit_train_batch(inference, train_batch_size, warmup, max_seconds)
            if bs != train_batch_size:
                notes.append(f"training batch shrunk from {train_batch_size} to {bs} to fit time")
            report(f"training batch {bs}")
            train_timing = _measure_training(
                model, make_input(bs), dev, autocast, warmup, iters, max_seconds
            )
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)
    return ProfileResult(
        name=name or type(model).__name__,
        input_size=input_size,
        params=sum(p.numel() for p in model.parameters()),
        gflops=flops / 1e9,
        device=described,
        precision="bf16 autocast" if bf16 else "fp32",
        channels_last=channels_last,
        inference=tuple(inference),
        train=train_timing,
        memory_measure=_memory_measure(
            dev, [*inference, *([train_timing] if train_timing else [])]
        ),
        notes=tuple(notes),
    )


def profile_backbone(
    name: str,
    input_size: int | None = None,
    *,
    taxonomy: Taxonomy | None = None,
    model_config: ModelConfig | None = None,
    **kwargs: Any,
) -> ProfileResult:
    """Profile the multi-task network (default taxonomy, random init) built on backbone ``name``,
    at ``input_size`` (default: the backbone's own input size).

    Costs are of the whole network attire trains and serves, heads included; ``kwargs`` go to
    ``profile_model``.
    """
    cfg = (model_config or ModelConfig()).model_copy(update={"backbone": name})
    model = MultiTaskModel(taxonomy or load_taxonomy(), cfg, load_pretrained=False)
    size = input_size or model.backbone_info.input_size[-1]
    return profile_model(model, size, name=name, **kwargs)


def profile_checkpoint(
    ckpt_dir: str | Path,
    size: int | None = None,
    *,
    name: str | None = None,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> ProfileResult:
    """Profile an exported checkpoint at ``size`` (default: the input size it was trained at);
    ``device`` may be "auto"; ``kwargs`` go to ``profile_model``."""
    model, meta = load_checkpoint(ckpt_dir)
    return profile_model(
        model,
        size or meta.preprocessing.input_size,
        name=name or Path(ckpt_dir).name,
        device=resolve_device(str(device)),
        **kwargs,
    )


def profile_target(
    target: str | Path,
    size: int | None = None,
    *,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> ProfileResult:
    """``attire profile``'s argument: a checkpoint folder, or a backbone name (the multi-task
    network on the default taxonomy, random init, at ``size`` or the backbone's own input size).
    """
    path = Path(target)
    if path.is_dir():
        return profile_checkpoint(path, size, device=device, **kwargs)
    name = str(target)
    if not path.exists() and timm.is_model(name):
        return profile_backbone(name, size, device=resolve_device(str(device)), **kwargs)
    what = "a file" if path.exists() else "not a folder"
    raise AttireError(
        f"{name}: neither a checkpoint folder (weights.safetensors, attire.json, taxonomy.yaml) "
        f"nor a known backbone name ({what}); pass the folder written by `attire train` "
        "(e.g. runs/NAME/model) or a name such as resnet18, drn_c_26, tf_efficientnet_lite0 "
        "(attire.models.list_backbones(), timm.list_models())"
    )


def count_flops(
    model: nn.Module, input_size: int, *, in_chans: int = 3, device: str | torch.device = "cpu"
) -> int:
    """Forward FLOPs of one image at ``input_size`` (see FLOPS_NOTE for what is counted)."""
    x = torch.randn(1, in_chans, input_size, input_size, device=device)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def describe_device(device: str | torch.device) -> str:
    """GPU name, or CPU model with torch's thread count and the malloc in use."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return f"{torch.cuda.get_device_name(dev)} (CUDA {torch.version.cuda})"
    return f"{_cpu_model()}, {torch.get_num_threads()} torch threads, {malloc_name()}"


def malloc_name() -> str:
    """The malloc this process uses: tcmalloc/jemalloc when preloaded, else the system one.

    CPU training speed depends on it, so benchmark output should say which was used.
    """
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return "system malloc"
    text = maps.read_text()
    for lib in ("tcmalloc", "jemalloc"):
        if f"lib{lib}" in text:
            return lib
    return "glibc malloc"


def rich_table(results: Sequence[ProfileResult], *, title: str | None = None) -> Table:
    """The results as a rich table, one row per model and size; devices in the caption."""
    table = Table(title=title, caption=_caption(results))
    for i, col in enumerate(_COLUMNS):
        table.add_column(col, justify="left" if i == 0 else "right", no_wrap=i == 0)
    for r in results:
        table.add_row(*_row(r))
    return table


def markdown_table(results: Sequence[ProfileResult]) -> str:
    """The same table as Markdown, followed by the caption lines."""
    lines = [
        "| " + " | ".join(_COLUMNS) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(_COLUMNS) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(_row(r)) + " |" for r in results]
    return "\n".join([*lines, "", _caption(results)])


_COLUMNS = (
    "model",
    "px",
    "params M",
    "GFLOPs",
    "b1 p50 ms",
    "b1 p95 ms",
    "infer img/s",
    "train img/s",
    "peak MB",
    "iters",
)
_LEGEND = (
    "img/s (bN): best inference batch / training batch N; peak MB: inference/training; "
    "iters: timed calls at batch 1/best batch/training"
)


def _row(r: ProfileResult) -> list[str]:
    lat, best, tr = r.latency, r.best, r.train

    def mb(t: Timing | None) -> str:
        return "-" if t is None or t.peak_memory_mb is None else f"{t.peak_memory_mb:.0f}"

    peak_infer = max(
        (t for t in r.inference if t.peak_memory_mb is not None),
        key=lambda t: t.peak_memory_mb or 0.0,
        default=None,
    )
    return [
        r.name,
        str(r.input_size),
        f"{r.params / 1e6:.2f}",
        f"{r.gflops:.3g}",
        f"{lat.p50_ms:.1f}" if lat else "-",
        f"{lat.p95_ms:.1f}" if lat else "-",
        f"{best.throughput:.1f} (b{best.batch_size})" if best else "-",
        f"{tr.throughput:.1f} (b{tr.batch_size})" if tr else "-",
        f"{mb(peak_infer)}/{mb(tr)}",
        "/".join(str(t.iters) if t else "-" for t in (lat, best, tr)),
    ]


def _caption(results: Sequence[ProfileResult]) -> str:
    runs = sorted({f"{r.device}; {r.precision}" for r in results})
    lines = [f"device: {d}" for d in runs]
    lines += [_LEGEND, f"GFLOPs: {FLOPS_NOTE}"]
    lines += sorted({f"peak MB: {r.memory_measure}" for r in results})
    lines += [f"{r.name} @ {r.input_size}: {n}" for r in results for n in r.notes]
    return "\n".join(lines)


def _check_args(
    input_size: int,
    batch_sizes: Sequence[int],
    warmup: int,
    iters: int,
    max_seconds: float,
    train_batch_size: int,
) -> None:
    problems = [
        (input_size < 1, f"input_size must be >= 1, got {input_size}"),
        (not batch_sizes, "batch_sizes is empty"),
        (any(b < 1 for b in batch_sizes), f"batch sizes must be >= 1, got {list(batch_sizes)}"),
        (warmup < 0, f"warmup must be >= 0, got {warmup}"),
        (iters < 1, f"iters must be >= 1, got {iters}"),
        (max_seconds <= 0, f"max_seconds must be > 0, got {max_seconds}"),
        (
            train_batch_size < 2,
            f"train_batch_size must be >= 2 (BatchNorm), got {train_batch_size}",
        ),
    ]
    for bad, message in problems:
        if bad:
            raise AttireError(message)


def _input_factory(
    size: int, in_chans: int, dev: torch.device, fmt: torch.memory_format
) -> Callable[[int], torch.Tensor]:
    def make(batch: int) -> torch.Tensor:
        return torch.randn(batch, in_chans, size, size, device=dev).contiguous(memory_format=fmt)

    return make


def _autocast(dev: torch.device, bf16: bool) -> Callable[[], contextlib.AbstractContextManager]:
    def ctx() -> contextlib.AbstractContextManager:
        return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16)

    return ctx


def _calls_at_least(warmup: int) -> int:
    """Calls a measurement makes however tight the budget: one warm-up (if any) and one timed."""
    return 2 if warmup > 0 else 1


def _predicted_call_s(done: Sequence[Timing], batch_size: int) -> float:
    """Seconds one call at ``batch_size`` should take, from the cheapest per-image time so far."""
    if not done:
        return 0.0
    per_image = min(t.seconds / t.iters / t.batch_size for t in done)
    return per_image * batch_size


def _fit_train_batch(done: Sequence[Timing], wanted: int, warmup: int, max_seconds: float) -> int:
    bs = wanted
    while bs > 2:
        step = _STEPS_PER_TRAIN_STEP * _predicted_call_s(done, bs)
        if step * _calls_at_least(warmup) <= max_seconds:
            break
        bs //= 2
    return max(bs, 2)


def _measure_training(
    model: nn.Module,
    x: torch.Tensor,
    dev: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager],
    warmup: int,
    iters: int,
    max_seconds: float,
) -> Timing:
    net = copy.deepcopy(model).train()
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise AttireError("the model has no trainable parameters: profile it with train=False")
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    targets: dict[str, torch.Tensor] = {}

    def step() -> None:
        with autocast():
            loss = _training_loss(net(x), targets)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return _measure(step, dev, x.shape[0], warmup, iters, max_seconds)


def _training_loss(out: object, targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy on fixed random labels for each 2-D logits output, a plain sum for others.

    The multi-task model's shared embedding is left out, as in real training. Labels are drawn
    on the first call so every step does the same work; the cost, not learning, is measured.
    """
    if isinstance(out, Mapping):
        items = [(str(k), v) for k, v in out.items()]
    elif isinstance(out, list | tuple):
        items = [(str(i), v) for i, v in enumerate(out)]
    else:
        items = [("", out)]
    terms = []
    for key, t in items:
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            continue
        if key == EMBEDDING or key.endswith("__emb"):
            continue
        if t.ndim == 2:
            if key not in targets:
                targets[key] = torch.randint(t.shape[1], (t.shape[0],), device=t.device)
            terms.append(F.cross_entropy(t, targets[key]))
        else:
            terms.append(t.sum())
    if not terms:
        raise AttireError("the model returns no floating-point output to train on")
    return torch.stack([t.float() for t in terms]).sum()


def _measure(
    call: Callable[[], None],
    dev: torch.device,
    batch_size: int,
    warmup: int,
    iters: int,
    max_seconds: float,
) -> Timing:
    """Warm up (at most half the budget), then time calls until ``iters`` or the next call would
    pass ``max_seconds``; peak memory covers both."""

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    times: list[float] = []
    warm = 0
    with _peak_memory(dev) as peak:
        start = time.perf_counter()
        for _ in range(warmup):
            call()
            sync()
            warm += 1
            if time.perf_counter() - start >= max_seconds / 2:
                break
        while len(times) < iters:
            t0 = time.perf_counter()
            call()
            sync()
            times.append(time.perf_counter() - t0)
            if time.perf_counter() - start + float(np.mean(times)) > max_seconds:
                break
        wall = time.perf_counter() - start
    ms = np.asarray(times) * 1e3
    return Timing(
        batch_size=batch_size,
        iters=len(times),
        warmup=warm,
        seconds=float(sum(times)),
        wall_s=wall,
        p50_ms=float(np.percentile(ms, 50)),
        p95_ms=float(np.percentile(ms, 95)),
        truncated=len(times) < iters,
        peak_memory_mb=peak.get("mb"),
    )


@contextlib.contextmanager
def _peak_memory(dev: torch.device) -> Iterator[dict[str, float | None]]:
    """Yields a dict whose "mb" is set on exit to the peak memory growth inside the block."""
    found: dict[str, float | None] = {"mb": None}
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
        yield found
        found["mb"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
        return
    _release_free_memory()
    base_kb = _reset_peak_rss_kb()
    yield found
    if base_kb is not None:
        found["mb"] = max(_status_kb("VmHWM") - base_kb, 0) / 1024


def _memory_measure(dev: torch.device, timings: Sequence[Timing]) -> str:
    if dev.type == "cuda":
        return _CUDA_MEMORY
    return _CPU_MEMORY if any(t.peak_memory_mb is not None for t in timings) else _NO_MEMORY


def _reset_peak_rss_kb() -> int | None:
    """Reset the kernel's peak-RSS mark to the current RSS and return it (kB); None if the
    platform cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except OSError:
        return None


def _status_kb(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise OSError(f"/proc/self/status has no {key}")


def _release_free_memory() -> None:
    """Hand memory freed by earlier steps back to the OS, so RSS growth counts it again."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return
    for fn in ("MallocExtension_ReleaseFreeMemory", "malloc_trim"):
        release = getattr(libc, fn, None)
        if release is not None:
            release(*(() if fn.startswith("Malloc") else (0,)))
            return


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()
