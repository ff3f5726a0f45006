"""The catalog: built-in data, overrides, error messages, NGC key rules, default versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from nemotron_operator.core.catalog import (
    CatalogError,
    ModelEntry,
    key_requirement,
    load_catalog,
    parse_tag,
    precisions_for_compute_capability,
)

CATALOG = load_catalog()
NANO = CATALOG.models["nemotron-3-nano"]


def test_builtin_catalog_has_the_nemotron_3_family_and_its_companions() -> None:
    assert {
        "nemotron-3-nano",
        "nemotron-3-super",
        "nemotron-3-ultra",
        "nemotron-3-nano-omni",
        "llama-3.2-nv-embedqa-1b-v2",
        "llama-3.2-nv-rerankqa-1b-v2",
        "llama-3.1-nemoguard-8b-content-safety",
    } <= set(CATALOG.models)
    kinds = {model.kind for model in CATALOG.models.values()}
    assert kinds == {"llm", "embedding", "reranking", "guardrail"}


def test_every_release_tag_has_a_known_shape() -> None:
    for name, model in CATALOG.models.items():
        for release in model.releases:
            assert release.parsed is not None, f"{name} {release.tag}"


def test_gpu_lookup_accepts_labels_without_the_nvidia_prefix() -> None:
    assert CATALOG.gpu("H100-80GB-HBM3") == CATALOG.gpus["NVIDIA-H100-80GB-HBM3"]
    assert CATALOG.gpu("NVIDIA-H20") is None


@pytest.mark.parametrize(
    ("product", "cc"),
    [
        ("NVIDIA-A100-SXM4-40GB", (8, 0)),
        ("NVIDIA-L40S", (8, 9)),
        ("NVIDIA-H100-80GB-HBM3", (9, 0)),
        ("NVIDIA-B200", (10, 0)),
        ("NVIDIA-RTX-PRO-6000-Blackwell-Server-Edition", (12, 0)),
    ],
)
def test_compute_capability_rule_matches_the_catalogued_gpus(
    product: str, cc: tuple[int, int]
) -> None:
    entry = CATALOG.gpus[product]
    native, weight_only = precisions_for_compute_capability(cc)
    assert set(native) == set(entry.native_precisions)
    assert set(weight_only) == set(entry.weight_only_precisions)


# --- key rules (issue 8) -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "required", "why"),
    [
        ("2.0.9", True, "older than 2.0.10"),
        ("2.0.12", False, "public Feature Branch"),
        ("2.1.6", False, "public Feature Branch"),
        ("2.1.5-pb7", True, "Production Branch"),
        ("2.0.4-pb6.0", True, "Production Branch"),
        ("2.0.5-variant", True, "-variant"),
        ("1.8.1", True, "older than 2.0.10"),
        ("2.0.10", False, "public Feature Branch"),
        ("latest", True, "not a known NIM release shape"),
    ],
)
def test_key_requirement_on_real_tag_shapes(tag: str, required: bool, why: str) -> None:
    result = key_requirement(CATALOG.models["nemotron-3-super"], tag)
    assert result.required is required
    assert why in result.why


def test_generic_llm_nim_gated_models_and_keyless_less_nims_need_a_key() -> None:
    generic = NANO.model_copy(update={"image": "nvcr.io/nim/nvidia/llm-nim"})
    assert key_requirement(generic, "2.1.6") == (
        True,
        "the generic llm-nim image always needs an NGC key",
    )
    gated = NANO.model_copy(update={"gated": True})
    assert key_requirement(gated, "2.1.6").required
    embedding = CATALOG.models["llama-3.2-nv-embedqa-1b-v2"]
    assert key_requirement(embedding, "1.10.1").required


def test_parse_tag_reads_versions_and_channels() -> None:
    assert parse_tag("2.1.5-pb7") == ((2, 1, 5), "pb", "pb7")
    assert parse_tag("2.0.4-pb6.0") == ((2, 0, 4), "pb", "pb6")
    assert parse_tag("1.10") == ((1, 10, 0), "fb", None)
    assert parse_tag("2.0.5-variant") == ((2, 0, 5), "variant", None)
    assert parse_tag("2.1.6-rc1") is None


def test_production_branch_releases_come_from_a_repository_of_their_own() -> None:
    assert NANO.repository_for("2.0.4-pb6.0") == "nvcr.io/nim/nvidia/nemotron-3-nano-pb6"
    assert NANO.repository_for("2.1.5-pb7") == "nvcr.io/nim/nvidia/nemotron-3-nano-pb7"
    assert NANO.repository_for("2.1.5") == "nvcr.io/nim/nvidia/nemotron-3-nano"
    assert NANO.repository_for("2.0.5-variant") == "nvcr.io/nim/nvidia/nemotron-3-nano"
    # an override that already names the branch's repository is taken as it is
    branch = NANO.model_copy(update={"image": "registry.example.com/nim/nemotron-3-nano-pb6"})
    assert branch.repository_for("2.0.4-pb6.0") == branch.image


def test_every_llm_release_line_of_the_catalog_is_current() -> None:
    """NIM for LLMs is at 2.1.x: every Nemotron 3 model has a 2.1 Feature Branch release, which
    is the keyless default; Nano lists its Production Branch release."""
    for name in ("nemotron-3-nano", "nemotron-3-super", "nemotron-3-ultra", "nemotron-3-nano-omni"):
        model = CATALOG.models[name]
        newest = model.newest_release()
        assert newest.parsed is not None and newest.parsed.version >= (2, 1, 0), name
        assert not key_requirement(model, newest.tag).required, name
    production = [r.tag for r in NANO.releases if r.parsed and r.parsed.channel == "pb"]
    assert production == ["2.0.4-pb6.0"]
    assert all(key_requirement(NANO, tag).required for tag in production)


# --- default versions ------------------------------------------------------------------------


def test_default_release_is_the_newest_feature_branch_one_shipping_the_precision() -> None:
    assert NANO.newest_release("nvfp4").tag == "2.1.5"
    older_only = NANO.model_copy(update={"releases": NANO.releases[:1]})  # 1.7.0: bf16, fp8
    assert older_only.newest_release("fp8").tag == "1.7.0"
    ultra = CATALOG.models["nemotron-3-ultra"]
    assert ultra.newest_release("nvfp4").tag == "2.1.5"  # not the Day-0 2.0.5-variant
    only_day0 = [r for r in NANO.releases if r.tag == "2.1.5"]
    day0 = NANO.model_copy(
        update={"releases": (only_day0[0].model_copy(update={"tag": "2.2.0-variant"}),)}
    )
    assert day0.newest_release().tag == "2.2.0-variant"  # no Feature Branch release at all
    production = NANO.model_copy(update={"releases": [NANO.release("2.0.4-pb6.0")]})
    assert production.newest_release().tag == "2.0.4-pb6.0"


# --- overrides -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "overrides.yaml"
    path.write_text(text)
    return path


def test_overrides_add_a_release_a_model_and_a_gpu(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  nemotron-3-nano:
    releases:
      - {tag: "2.1.6", precisions: [bf16]}
      - {tag: "2.1.5", precisions: [bf16, fp8]}
  acme-coder:
    displayName: Acme Coder 8B
    kind: llm
    image: registry.example.com/nim/acme/coder
    architecture:
      parameters: 8000000000
      activeParameters: 8000000000
      attentionLayers: 32
      kvHeads: 8
      headDim: 128
      nativeContextLength: 32768
    releases:
      - {tag: "2.1.6", precisions: [bf16]}
gpus:
  NVIDIA-H20:
    memoryMiB: 97871
    computeCapability: "9.0"
    nativePrecisions: [fp16, bf16, fp8]
""",
    )
    catalog = load_catalog(path)
    nano = catalog.models["nemotron-3-nano"]
    assert nano.release("2.1.6") is not None and nano.release("1.7.0") is not None
    assert nano.release("2.1.5").precisions == ("bf16", "fp8")  # type: ignore[union-attr]
    assert nano.newest_release("bf16").tag == "2.1.6"
    assert nano.newest_release("nvfp4").tag == "2.0.12"
    assert nano.published_memory_gib == NANO.published_memory_gib  # untouched fields stay
    assert catalog.models["acme-coder"].keyless_from is None
    assert catalog.gpus["NVIDIA-H20"].memory_mib == 97871
    assert set(catalog.models) > set(CATALOG.models)


def test_an_overrides_path_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, "gpus:\n  NVIDIA-L40S: {memoryMiB: 46000}\n")
    assert load_catalog(path).gpus["NVIDIA-L40S"].memory_mib == 46000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "models:\n  nemotron-3-nano:\n    releases:\n"
            "      - {tag: '2.1.6', precisions: [fp4]}\n",
            "models.nemotron-3-nano.releases.",
        ),
        ("models:\n  new-model: {kind: llm}\n", "models.new-model.displayName: Field required"),
        ("gpus:\n  NVIDIA-X: {memoryMiB: many}\n", "gpus.NVIDIA-X.memoryMiB"),
        ("models: [a, b]\n", "models must map names to mappings"),
        ("modles: {}\n", "unknown top-level keys ['modles']"),
        ("models: {a: [\n", "not valid YAML"),
        (
            "models:\n  nemotron-3-nano: {downloadGiB: {int4: 10}}\n",
            "unknown precisions ['int4']",
        ),
    ],
)
def test_bad_overrides_name_the_file_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CatalogError) as error:
        load_catalog(path)
    message = str(error.value)
    assert message.startswith(f"{path}: ")
    assert expected in message
    assert "\n" not in message


def test_missing_overrides_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read catalog overrides"):
        load_catalog(tmp_path / "absent.yaml")


def test_model_entries_refuse_unknown_fields() -> None:
    with pytest.raises(ValueError, match="Extra inputs"):
        ModelEntry.model_validate({**NANO.model_dump(by_alias=True), "flavour": "x"})
