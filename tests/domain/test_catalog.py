"""Importing a models.yaml: both layouts of the original, every error, the manifests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from fovea.domain.catalog import (
    CatalogError,
    ImportedCatalog,
    catalog_manifest,
    parse_models_yaml,
    render_manifests,
)
from fovea.domain.resources import CatalogSpec, Framework, ModelSelection, SelectionSpec

REPO = Path(__file__).resolve().parents[2]
CATALOG_DIR = REPO / "manifests" / "catalog"

# The documented layout: `tasks:`, vram_mb, selected set and null.
DOCUMENTED = """
tasks:
  video_summarization:
    selected: llama-4-scout
    options:
      llama-4-scout:
        model_id: meta-llama/Llama-4-Scout
        framework: sglang
        vram_gb: 8.0
        speed: fast
  object_detection:
    selected: yolov8n
    options:
      yolov8n:
        model_id: yolov8n
        vram_mb: 512
        speed: fast
  object_tracking:
    selected: null
    options:
      bytetrack: {model_id: bytetrack, vram_mb: 256}

inference:
  max_memory_per_model: 24.0
  offload_threshold: 0.8
  warmup_on_startup: false
"""

# The shipped layout: `models:`, vram_gb only, the fields and values seen in the
# wild (quantization, provider, api_endpoint, requires_api_key, fps, speeds
# very_fast/real_time, audio frameworks), external APIs without VRAM, "auto".
SHIPPED = """
models:
  video_summarization:
    selected: "gemma-3-27b"
    options:
      gemma-3-27b:
        model_id: "google/gemma-3-27b-it"
        quantization: "4bit"
        framework: "sglang"
        vram_gb: 14
        speed: "very_fast"
        description: "Document analysis"
      gpt-4o:
        model_id: "gpt-4o"
        framework: "external_api"
        provider: "openai"
        api_endpoint: "https://api.openai.com/v1/chat/completions"
        requires_api_key: true
        speed: "fast"
  object_detection:
    options:
      florence-2:
        model_id: "microsoft/Florence-2-large"
        framework: "pytorch"
        vram_gb: 2
        speed: "real_time"
        fps: 30
  audio_transcription:
    selected: "whisper-v3-turbo"
    options:
      whisper-v3-turbo:
        model_id: "openai/whisper-large-v3-turbo"
        framework: "whisper"
        vram_gb: 5
      faster-whisper-large-v3:
        model_id: "Systran/faster-whisper-large-v3"
        framework: "faster_whisper"
        vram_gb: 3
  speaker_diarization:
    selected: "pyannote-3-1"
    options:
      pyannote-3-1:
        model_id: "pyannote/speaker-diarization-3.1"
        framework: "pyannote"
        vram_gb: 0.1
inference:
  max_memory_per_model: "auto"
  offload_threshold: 0.85
  warmup_on_startup: false
  default_batch_size: 1
  max_batch_size: 8
"""


def test_documented_layout() -> None:
    imported = parse_models_yaml(DOCUMENTED)
    spec = imported.spec
    assert list(spec.tasks) == ["video_summarization", "object_detection", "object_tracking"]
    assert imported.selected == {
        "video_summarization": "llama-4-scout",
        "object_detection": "yolov8n",
        "object_tracking": None,
    }
    yolo = spec.option("object_detection", "yolov8n")
    assert yolo is not None and yolo.vram_mb == 512 and yolo.vram_gib == 0.5
    assert spec.option("object_tracking", "bytetrack").vram_gib == 0.25  # type: ignore[union-attr]
    assert spec.inference.max_memory_per_model == 24.0
    assert spec.inference.warmup_on_startup is False


def test_shipped_layout_with_fields_from_the_wild() -> None:
    imported = parse_models_yaml(SHIPPED)
    spec = imported.spec
    assert imported.selected["object_detection"] is None  # `selected` missing
    gpt = spec.option("video_summarization", "gpt-4o")
    assert gpt is not None and gpt.is_external and gpt.vram_gib == 0.0
    assert gpt.provider == "openai" and gpt.requires_api_key is True
    gemma = spec.option("video_summarization", "gemma-3-27b")
    assert gemma is not None and gemma.quantization == "4bit" and gemma.speed == "very_fast"
    florence = spec.option("object_detection", "florence-2")
    assert florence is not None and florence.fps == 30 and florence.speed == "real_time"
    whisper = spec.option("audio_transcription", "faster-whisper-large-v3")
    assert whisper is not None and whisper.framework == Framework.FASTER_WHISPER
    assert spec.inference.max_memory_per_model == "auto"
    assert spec.inference.offload_threshold == 0.85


def test_task_types_are_data_not_a_fixed_list() -> None:
    text = "models:\n  claim_synthesis:\n    options:\n      x: {model_id: x, vram_gb: 1}\n"
    assert list(parse_models_yaml(text).spec.tasks) == ["claim_synthesis"]


def test_the_example_error_message_of_the_brief() -> None:
    text = """
tasks:
  object_detection:
    options:
      yolov8n: {model_id: yolov8n, vram_gb: 0.5, vram_mb: 512}
"""
    with pytest.raises(CatalogError) as err:
        parse_models_yaml(text)
    assert str(err.value) == (
        "models.yaml: task 'object_detection', option 'yolov8n': "
        "give either vram_gb or vram_mb, not both"
    )


def _option(fields: str) -> str:
    return f"tasks:\n  det:\n    options:\n      opt: {fields}\n"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "must be a mapping with 'tasks' (or 'models') and 'inference', got nothing"),
        ("- a\n- b\n", "must be a mapping"),
        ("inference: {}\n", "has no 'tasks' (or 'models') mapping of tasks"),
        ("tasks: {}\nmodels: {}\n", "has both 'tasks' and 'models'"),
        ("tasks: {}\n", "'tasks' has no tasks"),
        ("tasks: [a]\n", "'tasks' must map task names to tasks, got a list"),
        ("tasks: {det: {options: {}}}\nextra: 1\n", "unknown top-level key 'extra'"),
        (
            "tasks:\n  det: 3\n",
            "task 'det': must be a mapping with 'selected' and 'options', got 3",
        ),
        ("tasks:\n  det: {}\n", "task 'det': needs 'options'"),
        ("tasks:\n  det: {options: {}}\n", "got an empty mapping"),
        (
            "tasks:\n  det: {options: {a: {model_id: a, vram_gb: 1}}, colour: red}\n",
            "task 'det': unknown key 'colour'",
        ),
        (
            "tasks:\n  'bad task': {options: {a: {model_id: a, vram_gb: 1}}}\n",
            "task 'bad task': a task name must be",
        ),
        (
            "tasks:\n  det: {options: {'a b': {model_id: a, vram_gb: 1}}}\n",
            "task 'det', option 'a b': an option name must be",
        ),
        (
            "tasks:\n  det: {selected: zz, options: {a: {model_id: a, vram_gb: 1}}}\n",
            "task 'det': selected model 'zz' is not one of its options (a)",
        ),
        (
            "tasks:\n  det: {selected: no, options: {a: {model_id: a, vram_gb: 1}}}\n",
            "task 'det': 'selected' must be an option name or null, got False",
        ),
        (
            "tasks:\n  det: {description: [1], options: {a: {model_id: a, vram_gb: 1}}}\n",
            "task 'det': 'description' must be text",
        ),
        (
            _option("{model_id: a}"),
            "task 'det', option 'opt': needs vram_gb or vram_mb (only external_api options",
        ),
        (
            _option("{model_id: a, vram_gb: 1, vram_mb: 1024}"),
            "task 'det', option 'opt': give either vram_gb or vram_mb, not both",
        ),
        (_option("{vram_gb: 1}"), "task 'det', option 'opt': field 'model_id': Field required"),
        (
            _option("{model_id: a, vram_gb: -1}"),
            "field 'vram_gb': Input should be greater than or equal to 0 (got -1)",
        ),
        (_option("{model_id: a, vram_gb: lots}"), "field 'vram_gb': Input should be a valid"),
        (
            _option("{model_id: a, vram_gb: 1, framework: tensorflow}"),
            "field 'framework': Input should be 'transformers'",
        ),
        (_option("{model_id: a, vram_gb: 1, speed: warp}"), "field 'speed': Input should be"),
        (
            _option("{model_id: a, vram_gb: 1, colour: red}"),
            "task 'det', option 'opt': unknown field 'colour'",
        ),
        (_option("[1, 2]"), "task 'det', option 'opt': must be a mapping of fields, got a list"),
        (
            "tasks:\n  a_b: {options: {x: {model_id: x, vram_gb: 1}}}\n"
            "  a.b: {options: {x: {model_id: x, vram_gb: 1}}}\n",
            "tasks 'a_b' and 'a.b' would share the ModelSelection name 'a-b'",
        ),
        (
            "tasks:\n  Det_X: {options: {x: {model_id: x, vram_gb: 1}}}\n"
            "  det-x: {options: {x: {model_id: x, vram_gb: 1}}}\n",
            "tasks 'Det_X' and 'det-x' would share the ModelSelection name 'det-x' "
            "(task names may not differ only by case, '_', '-' or '.'): rename one of them",
        ),
        (
            "tasks:\n  det: {options: {x: {model_id: x, vram_gb: 1}}}\n"
            "  DET: {options: {x: {model_id: x, vram_gb: 1}}}\n",
            "tasks 'det' and 'DET' would share the ModelSelection name 'det'",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\ninference: 3\n",
            "inference: must be a mapping of fields, got 3",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\n"
            "inference: {max_memory_per_model: lots}\n",
            "inference: field 'max_memory_per_model': must be a positive number of GiB or 'auto', "
            "got 'lots'",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\n"
            "inference: {offload_threshold: 1.5}\n",
            "inference: field 'offload_threshold': Input should be less than or equal to 1",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\n"
            "inference: {default_batch_size: 9, max_batch_size: 8}\n",
            "inference: default_batch_size (9) exceeds max_batch_size (8)",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\nsharing_mode: shared\n",
            "field 'sharing_mode': Input should be 'whole', 'timeSliced', 'hami', 'mig' or 'dra'",
        ),
        (
            "tasks: {det: {options: {a: {model_id: a, vram_gb: 1}}}}\n"
            "gpu_overrides: [{node: n, count: 1, memory_gb: 8},"
            " {node: n, count: 2, memory_gb: 8}]\n",
            "more than one override for node n",
        ),
        (
            "tasks:\n  det: {}\n  det: {}\n",
            "not valid YAML: duplicate key 'det' (line 3, column 3)",
        ),
        ("tasks: [\n", "not valid YAML: "),
    ],
)
def test_every_problem_names_file_task_option_and_what(text: str, problem: str) -> None:
    with pytest.raises(CatalogError) as err:
        parse_models_yaml(text, "conf/models.yaml")
    lines = str(err.value).splitlines()
    assert all(line.startswith("conf/models.yaml: ") for line in lines), lines
    assert any(problem in line for line in lines), lines


def test_all_problems_are_reported_at_once() -> None:
    text = """
tasks:
  det:
    selected: nope
    options:
      a: {model_id: a}
      b: {model_id: b, vram_gb: 1, vram_mb: 2}
inference: {offload_threshold: 0}
"""
    with pytest.raises(CatalogError) as err:
        parse_models_yaml(text)
    assert len(err.value.problems) == 4, err.value.problems


def test_external_api_needs_no_vram_but_may_not_have_both() -> None:
    ok = _option("{model_id: claude, framework: external_api, api_key_secret: anthropic}")
    option = parse_models_yaml(ok).spec.option("det", "opt")
    assert option is not None and option.is_external and option.api_key_secret == "anthropic"
    with pytest.raises(CatalogError, match="not both"):
        parse_models_yaml(_option("{model_id: c, framework: external_api, vram_gb: 1, vram_mb: 1}"))


def test_manifests_keep_every_selection_and_only_what_the_source_set() -> None:
    text = render_manifests(parse_models_yaml(DOCUMENTED), name="gpu", namespace="video")
    docs = list(yaml.safe_load_all(text))
    catalog, *selections = docs
    assert catalog["kind"] == "ModelCatalog"
    assert catalog["metadata"] == {"name": "gpu", "namespace": "video"}
    yolo = catalog["spec"]["tasks"]["object_detection"]["options"]["yolov8n"]
    assert yolo == {"modelId": "yolov8n", "vramMb": 512, "speed": "fast"}  # no defaults added
    assert "sharingMode" not in catalog["spec"]
    assert CatalogSpec.model_validate(catalog["spec"]) == parse_models_yaml(DOCUMENTED).spec
    assert [s["metadata"]["name"] for s in selections] == [
        "video-summarization",
        "object-detection",
    ]  # object_tracking had none selected: no selection
    for doc in selections:
        sel = ModelSelection.model_validate(doc)
        assert sel.spec.catalog == "gpu" and sel.metadata["namespace"] == "video"
    assert selections[1]["spec"] == {
        "task": "object_detection",
        "model": "yolov8n",
        "catalog": "gpu",
    }


def test_no_selections_and_no_namespace() -> None:
    docs = list(
        yaml.safe_load_all(render_manifests(parse_models_yaml(DOCUMENTED), selections=False))
    )
    assert len(docs) == 1 and docs[0]["metadata"] == {"name": "default"}


@pytest.mark.parametrize(
    ("name", "namespace"), [("Default", None), ("ok", "Bad_NS"), ("a b", None)]
)
def test_invalid_names_are_refused(name: str, namespace: str | None) -> None:
    with pytest.raises(CatalogError, match="not a valid Kubernetes"):
        render_manifests(parse_models_yaml(DOCUMENTED), name=name, namespace=namespace)


def test_fractional_memory_limit_is_written_as_a_decimal_string() -> None:
    text = _option("{model_id: a, vram_gb: 1}") + "inference: {max_memory_per_model: 22.5}\n"
    spec = parse_models_yaml(text).spec
    manifest = catalog_manifest(spec)
    assert manifest["spec"]["inference"]["maxMemoryPerModel"] == "22.5"
    assert CatalogSpec.model_validate(manifest["spec"]).inference.max_memory_per_model == 22.5


def test_header_comment_comes_first() -> None:
    text = render_manifests(parse_models_yaml(DOCUMENTED), header="line one\n\nline three")
    assert text.startswith("# line one\n#\n# line three\n---\n")


@pytest.mark.parametrize(
    ("source", "generated"),
    [("models.yaml", "default.yaml"), ("demo-models.yaml", "demo.yaml")],
)
def test_shipped_catalogs_agree_with_their_sources(source: str, generated: str) -> None:
    from fovea.operator.catalog_cli import header_for

    imported = parse_models_yaml((CATALOG_DIR / source).read_text(), source)
    expected = render_manifests(imported, header=header_for(source))
    assert (CATALOG_DIR / generated).read_text() == expected, (
        f"manifests/catalog/{generated} is stale: run "
        f"`fovea-models catalog import manifests/catalog/{source} -o manifests/catalog/{generated}`"
    )


def test_default_catalog_has_the_contracts_models() -> None:
    spec = parse_models_yaml((CATALOG_DIR / "models.yaml").read_text()).spec
    expected = {
        "object_detection": {"yolov8n", "yolov8s", "yolov8m", "yolov8l", "groundingdino"},
        "object_tracking": {"samurai", "sam2.1", "sam2long", "yolo11n-seg", "bytetrack"},
        "video_summarization": {"llama-4-scout", "llama-4-maverick", "claude", "gpt-4o", "gemini"},
    }
    for task, names in expected.items():
        assert names <= set(spec.tasks[task].options), task
    llava = [n for n in spec.tasks["video_summarization"].options if n.startswith("llava")]
    assert len(llava) >= 2
    figures = {
        ("object_detection", "yolov8n"): 0.5,
        ("object_detection", "groundingdino"): 2.0,
        ("object_tracking", "samurai"): 4.0,
        ("object_tracking", "bytetrack"): 0.25,
        ("video_summarization", "llama-4-scout"): 8.0,
        ("video_summarization", "llama-4-maverick"): 16.0,
    }
    for (task, name), gib in figures.items():
        assert spec.tasks[task].options[name].vram_gib == gib, name
    frameworks = {
        "llama-4-scout": Framework.SGLANG,
        "llama-4-maverick": Framework.VLLM,
        "claude": Framework.EXTERNAL_API,
    }
    for name, framework in frameworks.items():
        assert spec.tasks["video_summarization"].options[name].framework == framework
    for name in ("claude", "gpt-4o", "gemini"):
        assert spec.tasks["video_summarization"].options[name].api_key_secret
    assert spec.tasks["object_detection"].options["yolov8n"].cpu_memory_gb is not None
    inference = spec.inference
    assert (inference.offload_threshold, inference.warmup_on_startup) == (0.8, True)
    assert (inference.default_batch_size, inference.max_batch_size) == (1, 8)


def test_demo_catalog_carries_every_option_of_the_contract_catalog() -> None:
    """`make run` applies the demo: the contract's examples need every documented option."""
    demo = parse_models_yaml((CATALOG_DIR / "demo-models.yaml").read_text()).spec
    full = parse_models_yaml((CATALOG_DIR / "models.yaml").read_text()).spec
    assert set(demo.tasks) == set(full.tasks)
    for task, spec in full.tasks.items():
        for name, option in spec.options.items():
            shipped = demo.tasks[task].options[name]
            assert (shipped.model_id, shipped.framework) == (option.model_id, option.framework)
            assert shipped.vram_gib == option.vram_gib
            assert shipped.api_key_secret == option.api_key_secret


def test_demo_catalog_says_which_options_load_offline_and_which_are_stand_ins() -> None:
    imported = parse_models_yaml((CATALOG_DIR / "demo-models.yaml").read_text())
    full = parse_models_yaml((CATALOG_DIR / "models.yaml").read_text()).spec
    for task, spec in imported.spec.tasks.items():
        for name, option in spec.options.items():
            # An architecture means random weights, and the description says so.
            assert bool(option.architecture) == option.allow_random_weights
            if option.architecture:
                assert "random weights" in option.description
            elif not option.is_external:
                assert "weights not shipped" in option.description
            if name not in full.tasks[task].options:
                assert option.description.startswith("Stand-in:")
    # Every default selection really loads offline, on a CPU.
    for task, model in imported.selected.items():
        assert model, task
        option = imported.spec.tasks[task].options[model]
        assert option.architecture and option.allow_random_weights and option.cpu_memory_gb
    frameworks = {
        o.framework
        for t in imported.spec.tasks.values()
        for o in t.options.values()
        if o.architecture
    }
    assert frameworks == {Framework.ULTRALYTICS, Framework.TRANSFORMERS, Framework.PYTORCH}


def test_imported_selection_is_a_valid_selection_spec() -> None:
    imported = ImportedCatalog(parse_models_yaml(DOCUMENTED).spec, {"object_detection": "yolov8n"})
    docs = list(yaml.safe_load_all(render_manifests(imported)))
    assert SelectionSpec.model_validate(docs[1]["spec"]).model == "yolov8n"
