"""Memory measurement: what is counted, and which figure is chosen."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fovea.model_pod import measure


def test_module_bytes_counts_parameters_and_buffers() -> None:
    module = nn.Sequential(nn.Linear(10, 20), nn.BatchNorm1d(20))
    params, buffers = measure.module_bytes(module)
    assert params == (10 * 20 + 20 + 20 + 20) * 4
    # running_mean and running_var (float32) and num_batches_tracked (int64)
    assert buffers == 20 * 4 * 2 + 8


def test_tied_weights_are_counted_once() -> None:
    embedding = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = embedding.weight
    params, _ = measure.module_bytes(nn.ModuleList([embedding, head]))
    assert params == 100 * 16 * 4


def test_half_precision_counts_two_bytes() -> None:
    params, _ = measure.module_bytes(nn.Linear(8, 8, bias=False).half())
    assert params == 8 * 8 * 2


def test_cpu_reading_reports_parameters_and_rss_growth() -> None:
    base = measure.baseline("cpu")
    module = nn.Linear(1024, 1024)  # 4 MiB of weights, allocated after the baseline
    reading = measure.cpu_reading(module, base)
    assert reading.method == measure.METHOD_PARAMETERS
    assert reading.measured_bytes == (1024 * 1024 + 1024) * 4
    assert reading.breakdown["parametersGb"] == pytest.approx(reading.measured_gib, abs=1e-4)
    assert reading.breakdown["rssGrowthGb"] >= 0


@pytest.mark.parametrize(
    ("index", "visible", "expected"),
    [
        (0, None, 0),
        (2, "", 2),
        (0, "3,1", 3),
        (1, "3,1", 1),
        (0, "GPU-abc-123", "GPU-abc-123"),
        (1, " 2 , 5 ", 5),
    ],
)
def test_nvml_target_follows_cuda_visible_devices(
    index: int, visible: str | None, expected: int | str
) -> None:
    assert measure.nvml_target(index, visible) == expected


def test_nvml_target_refuses_an_invisible_device() -> None:
    with pytest.raises(ValueError, match="not among CUDA_VISIBLE_DEVICES"):
        measure.nvml_target(2, "0,1")


def test_cuda_figure_prefers_nvml_then_device_delta_then_reserved() -> None:
    assert measure.choose_cuda_figure(900, 1000, 500) == (900, measure.METHOD_NVML_PROCESS)
    assert measure.choose_cuda_figure(None, 1000, 500) == (1000, measure.METHOD_DEVICE_DELTA)
    assert measure.choose_cuda_figure(None, None, 500) == (500, measure.METHOD_TORCH_RESERVED)
    # another process freeing memory meanwhile can make the delta useless
    assert measure.choose_cuda_figure(None, -5, 500) == (500, measure.METHOD_TORCH_RESERVED)


def test_cuda_index() -> None:
    assert measure.cuda_index("cuda") == 0
    assert measure.cuda_index("cuda:3") == 3


def test_device_figures_exist_exactly_when_a_gpu_does() -> None:
    if torch.cuda.is_available():
        total = measure.device_total_bytes(0)
        assert total is not None and total > 0
    else:  # no driver, no NVML: None, not an exception
        assert measure.device_used_bytes(0) is None
        assert measure.device_total_bytes(0) is None
