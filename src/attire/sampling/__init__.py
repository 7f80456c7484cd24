"""Rebalancing long-tailed, partially labelled training data: samplers and manifest resampling."""

from attire.sampling.resample import ResampleError, oversample, undersample
from attire.sampling.samplers import (
    SAMPLER_NAMES,
    ClassPowerSampler,
    InstanceSampler,
    MultiTaskBalancedSampler,
    ProgressiveSampler,
    RowSampler,
    SamplerConfig,
    SamplerError,
    build_sampler,
    class_frequencies,
    class_power_weights,
    multitask_weights,
    targets_from_dataset,
    targets_from_manifest,
)

__all__ = [
    "SAMPLER_NAMES",
    "ClassPowerSampler",
    "InstanceSampler",
    "MultiTaskBalancedSampler",
    "ProgressiveSampler",
    "ResampleError",
    "RowSampler",
    "SamplerConfig",
    "SamplerError",
    "build_sampler",
    "class_frequencies",
    "class_power_weights",
    "multitask_weights",
    "oversample",
    "targets_from_dataset",
    "targets_from_manifest",
    "undersample",
]
