"""Model facts from a Hugging Face config.json: parameters counted from the widths agree with
the published counts, and each family's memory-relevant structure is read."""

from __future__ import annotations

import json
from typing import Any

import pytest

from nemotron_operator.core.hf_config import (
    HfConfigError,
    architecture_from_hf_config,
    architecture_from_hf_config_text,
)
from nemotron_operator.core.planner import kv_cache_gib, memory_facts
from tests.calibrate import CORPUS, as_config, corpus_models

MODELS = corpus_models()


def countable() -> list[str]:
    names = []
    for name, entry in MODELS.items():
        try:
            architecture_from_hf_config(as_config(entry))
        except HfConfigError:
            continue
        names.append(name)
    return names


def test_most_corpus_models_have_a_config_to_count_from() -> None:
    assert (CORPUS / "models.yaml").exists()
    assert len(countable()) >= 15


@pytest.mark.parametrize("name", countable())
def test_counted_parameters_are_within_2_percent_of_the_published_count(name: str) -> None:
    entry = MODELS[name]
    counted = architecture_from_hf_config(as_config(entry)).parameters
    assert counted == pytest.approx(float(entry["parameters_b"]) * 1e9, rel=0.02)


# Nemotron 3 Nano's config.json (huggingface.co/nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16),
# the fields that size it
NANO: dict[str, Any] = {
    "architectures": ["NemotronHForCausalLM"],
    "model_type": "nemotron_h",
    "hidden_size": 2688,
    "hybrid_override_pattern": "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
    "intermediate_size": 1856,
    "mamba_head_dim": 64,
    "mamba_num_heads": 64,
    "max_position_embeddings": 262144,
    "mlp_hidden_act": "relu2",
    "moe_intermediate_size": 1856,
    "moe_shared_expert_intermediate_size": 3712,
    "n_groups": 8,
    "n_routed_experts": 128,
    "n_shared_experts": 1,
    "num_attention_heads": 32,
    "num_experts_per_tok": 6,
    "num_hidden_layers": 52,
    "num_key_value_heads": 2,
    "head_dim": 128,
    "ssm_state_size": 128,
    "conv_kernel": 4,
    "tie_word_embeddings": False,
    "vocab_size": 131072,
}


def test_a_hybrid_mamba_model_keeps_a_kv_cache_only_in_its_attention_layers() -> None:
    arch = architecture_from_hf_config(NANO)
    assert (arch.attention_layers, arch.mamba_layers, arch.moe_layers) == (6, 23, 23)
    assert arch.parameters == pytest.approx(31.6e9, rel=0.01)
    assert arch.active_parameters == pytest.approx(3.5e9, rel=0.05)
    # 6 layers x 2 (K, V) x 2 heads x 128 x 2 bytes = 6 KiB per token
    assert kv_cache_gib(memory_facts(arch), 262144) == pytest.approx(1.5, abs=0.05)


def test_multi_head_latent_attention_caches_the_compressed_latent() -> None:
    arch = architecture_from_hf_config(as_config(MODELS["deepseek-r1-0528"]))
    facts = memory_facts(arch)
    # 61 layers x (512 + 64) x 2 bytes per token, on every tensor-parallel rank
    per_token = 61 * 576 * 2
    assert kv_cache_gib(facts, 2**20) == pytest.approx(per_token * 2**20 / 2**30)
    assert kv_cache_gib(facts, 2**20, tp=8) == kv_cache_gib(facts, 2**20)


def test_sliding_window_layers_hold_only_the_window() -> None:
    arch = architecture_from_hf_config(as_config(MODELS["gpt-oss-120b"]))
    assert (arch.sliding_window, arch.sliding_window_layers) == (128, 18)
    facts = memory_facts(arch)
    full_only = 18 * 2 * 8 * 64 * 2 * 131072 / 2**30
    assert kv_cache_gib(facts, 131072) == pytest.approx(full_only, rel=0.01)


def test_config_text_is_read_as_json_and_gaps_are_named() -> None:
    assert architecture_from_hf_config_text(json.dumps(NANO)).attention_layers == 6
    with pytest.raises(HfConfigError, match="not valid JSON"):
        architecture_from_hf_config_text("{")
    without_layers = {key: value for key, value in NANO.items() if key != "num_hidden_layers"}
    with pytest.raises(HfConfigError, match="num_hidden_layers"):
        architecture_from_hf_config(without_layers)
    dense = {"hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 32}
    with pytest.raises(HfConfigError, match="vocab_size"):
        architecture_from_hf_config(dense)
    with pytest.raises(HfConfigError, match="intermediate_size"):
        architecture_from_hf_config({**dense, "vocab_size": 32000})


def test_a_nas_model_holds_kv_only_in_layers_that_kept_attention() -> None:
    arch = architecture_from_hf_config(as_config(MODELS["llama-3.3-nemotron-super-49b-v1"]))
    assert (arch.attention_layers, arch.kv_heads, arch.mlp_layers) == (49, 8, 80)
    # 49 layers x 2 x 8 heads x 128 x 2 bytes per token, not the 80 layers of its Llama parent
    assert kv_cache_gib(memory_facts(arch), 131072) == pytest.approx(49 * 4096 * 131072 / 2**30)
    # activations follow the widest MLP (5.25 x hidden), not the mean one
    assert arch.widest_intermediate_size == 28672
    assert arch.intermediate_size is not None and arch.intermediate_size < 28672
