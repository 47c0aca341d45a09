"""Engine servers (sglang, vLLM): command lines, and a stand-in child that starts and dies."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fovea.model_pod.adapters.adapter_engine import EngineAdapter
from fovea.model_pod.adapters.base import LoadError, ModelSpec, PredictError
from fovea.model_pod.adapters.engine_commands import (
    SGLANG,
    VLLM,
    Engine,
    EngineLaunch,
    child_visible_devices,
    memory_fraction,
    sglang_command,
    vllm_command,
)
from fovea.model_pod.identity import Identity
from fovea.model_pod.lifecycle import FAILED, READY, ModelService
from waiting import eventually

STAND_IN = Path(__file__).with_name("stand_in_engine.py")
GIB = 1024**3


def stand_in(*extra: str) -> Engine:
    def command(launch: EngineLaunch) -> list[str]:
        return [
            sys.executable,
            str(STAND_IN),
            "--model-path",
            launch.model,
            "--port",
            str(launch.port),
            *extra,
        ]

    return Engine("stand-in", command, requires_gpu=False)


@pytest.fixture
def adapters() -> Iterator[list[EngineAdapter]]:
    made: list[EngineAdapter] = []
    yield made
    for adapter in made:
        adapter.close()


def make(adapters: list[EngineAdapter], engine: Engine, timeout: float = 20.0) -> EngineAdapter:
    adapter = EngineAdapter(ModelSpec("chat", "org/chat-model"), engine, start_timeout=timeout)
    adapters.append(adapter)
    return adapter


# --- command lines -------------------------------------------------------------------


def test_sglang_command_line() -> None:
    launch = EngineLaunch(model="Qwen/Qwen2.5-7B-Instruct", port=31000, memory_fraction=0.25)
    assert sglang_command(launch, python="/usr/bin/python3") == [
        "/usr/bin/python3",
        "-m",
        "sglang.launch_server",
        "--model-path",
        "Qwen/Qwen2.5-7B-Instruct",
        "--host",
        "127.0.0.1",
        "--port",
        "31000",
        "--mem-fraction-static",
        "0.25",
    ]


def test_vllm_command_line() -> None:
    launch = EngineLaunch(
        model="/models/llama", port=8001, memory_fraction=0.5, random_weights=True
    )
    assert vllm_command(launch) == [
        "vllm",
        "serve",
        "/models/llama",
        "--host",
        "127.0.0.1",
        "--port",
        "8001",
        "--gpu-memory-utilization",
        "0.5",
        "--load-format",
        "dummy",
    ]


def test_memory_fraction_is_the_planned_share_of_the_gpu() -> None:
    assert memory_fraction(20, 80 * GIB) == 0.25
    assert memory_fraction(10, 80 * GIB) == 0.125
    assert memory_fraction(26.7, 80 * GIB) == 0.333  # rounded down, never above the plan
    assert memory_fraction(0.5, 80 * GIB) == 0.05  # at least enough to start
    assert memory_fraction(80, 80 * GIB) == 0.95  # headroom for the CUDA context
    with pytest.raises(ValueError, match="more than the GPU"):
        memory_fraction(100, 80 * GIB)
    with pytest.raises(ValueError, match="planned VRAM"):
        memory_fraction(None, 80 * GIB)
    with pytest.raises(ValueError, match="total memory is unknown"):
        memory_fraction(10, 0)


def test_child_sees_only_the_planned_gpu() -> None:
    assert child_visible_devices(1, None) == "1"
    assert child_visible_devices(1, "4,6") == "6"
    assert child_visible_devices(0, "GPU-aaaa") == "GPU-aaaa"
    with pytest.raises(ValueError, match="not among"):
        child_visible_devices(2, "4,6")


def test_real_engines_need_a_gpu_and_say_when_missing(adapters: list[EngineAdapter]) -> None:
    for engine in (SGLANG, VLLM):
        adapter = make(adapters, engine)
        with pytest.raises(LoadError) as caught:
            adapter.load("cpu")
        message = str(caught.value)
        # Either it is not installed here, or it refuses the CPU: both are said plainly.
        assert f"{engine.name} is not installed" in message or "needs a CUDA GPU" in message


# --- the child process ------------------------------------------------------------------


def test_starts_answers_health_and_forwards_requests(adapters: list[EngineAdapter]) -> None:
    adapter = make(adapters, stand_in())
    loaded = adapter.load("cpu")
    assert loaded.pid == adapter.process.pid  # type: ignore[union-attr]
    assert loaded.random_weights is False
    assert adapter.healthy()
    answer = adapter.predict({"messages": [{"role": "user", "content": "hi"}]})
    assert answer["choices"][0]["message"]["content"] == "echo: hi"
    assert answer["model"] == "org/chat-model"
    assert adapter.predict({"prompt": "x"})["choices"][0]["text"] == "echo: x"
    with pytest.raises(PredictError, match="messages"):
        adapter.predict({"input": "x"})
    assert adapter.failure() is None


def test_death_after_start_is_detected(adapters: list[EngineAdapter]) -> None:
    adapter = make(adapters, stand_in("--die-after", "0.5"))
    adapter.load("cpu")
    failure = eventually(adapter.failure, 10)
    assert failure is not None
    assert failure.startswith("stand-in server exited with code 9")
    assert "fatal error" in failure


def test_exit_while_starting_is_a_load_failure_with_its_output(
    adapters: list[EngineAdapter],
) -> None:
    adapter = make(
        adapters, stand_in("--fail-at-start", "torch.OutOfMemoryError: CUDA out of memory")
    )
    with pytest.raises(LoadError, match="exited with code 1 while starting") as caught:
        adapter.load("cpu")
    assert "CUDA out of memory" in str(caught.value)


def test_never_healthy_times_out_and_is_stopped(adapters: list[EngineAdapter]) -> None:
    adapter = make(adapters, stand_in("--never-healthy"), timeout=2.0)
    with pytest.raises(LoadError, match="did not answer /health within 2 s"):
        adapter.load("cpu")
    assert adapter.process is not None and adapter.process.poll() is not None


def test_close_stops_the_child(adapters: list[EngineAdapter]) -> None:
    adapter = make(adapters, stand_in())
    adapter.load("cpu")
    adapter.close()
    assert adapter.process is not None and adapter.process.poll() is not None
    # The watcher has seen the exit (and returned): a stop we asked for is not a failure.
    assert adapter.watcher is not None
    adapter.watcher.join(10)
    assert not adapter.watcher.is_alive()
    assert adapter.failure() is None


# --- through the model service --------------------------------------------------------------


def test_service_measures_the_child_and_reports_its_death(
    make_identity: Callable[..., Identity],
) -> None:
    identity = make_identity("sglang", "org/chat-model")
    adapter = EngineAdapter(identity.spec, stand_in("--hold-mib", "64", "--die-after", "2"))
    service = ModelService(identity, adapter, reporter=None)
    try:
        service.load()
        assert service.state == READY, service.reason
        measured = (service.report.measured_memory_gb or 0) * 1024**3
        assert measured >= 64 * 1024**2  # the child's resident memory, ballast included
        assert service.report.memory_breakdown["processRssGb"] > 0
        assert eventually(lambda: service.check() or service.state != READY, 10)
        assert service.state == FAILED
        assert (service.report.reason or "").startswith("stand-in server exited with code 9")
    finally:
        service.close()


def test_out_of_memory_at_engine_start_is_reported_as_such(
    make_identity: Callable[..., Identity],
) -> None:
    identity = make_identity("vllm", "org/chat-model")
    engine = stand_in(
        "--fail-at-start", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate"
    )
    service = ModelService(identity, EngineAdapter(identity.spec, engine), reporter=None)
    service.load()
    assert service.state == FAILED
    assert (service.reason or "").startswith(
        "Out of memory: load failed: stand-in exited with code 1"
    )
