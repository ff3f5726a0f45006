"""A model's facts from its Hugging Face config.json: what `plan --hf-config` and
`customModel.configMapRef` size a model with, without hand-typed parameters or heads.

`architecture_from_hf_config(config)` is pure: it reads the fields transformers' own model
classes read (Llama, Mistral, Qwen2/3 and their MoE, Mixtral, Phi-3, Gemma, DeepSeek V2/V3 with
multi-head latent attention, gpt-oss with sliding windows, Nemotron-H / Nemotron 3 hybrid Mamba,
Llama-Nemotron NAS blocks) and counts the parameters from the widths (catalog.parameter_counts).
A config it cannot read raises HfConfigError saying which field is missing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from nemotron_operator.core.catalog import Architecture, parameter_counts

# Mamba-2 defaults of transformers' NemotronHConfig, used when a config leaves them out
_MAMBA_CONV_KERNEL = 4


class HfConfigError(ValueError):
    """The config.json cannot be read as a decoder model's facts; the message says why."""


def _int(config: Mapping[str, Any], *keys: str, default: int | None = None) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int) and value >= 0:
            return value
    if default is not None:
        return default
    raise HfConfigError(f"config.json has no {' or '.join(keys)} (a non-negative integer)")


def _optional_int(config: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _text_config(config: Mapping[str, Any]) -> Mapping[str, Any]:
    """The language model's part of a multimodal config (Llama 4, Gemma 3, Mistral 3)."""
    text = config.get("text_config") or config.get("llm_config")
    return text if isinstance(text, Mapping) else config


def _gated(text: Mapping[str, Any], model_type: str) -> bool:
    """Whether the MLP has gate and up projections (SwiGLU, GeGLU) or one up projection
    (squared ReLU in Nemotron-4 and Nemotron-H, GELU in GPT-2-style models)."""
    if model_type.startswith("gemma"):
        return True  # GeGLU
    activation = str(text.get("mlp_hidden_act") or text.get("hidden_act") or "silu")
    return activation not in ("relu2", "gelu", "gelu_new", "gelu_pytorch_tanh")


def _hybrid_layers(pattern: str) -> dict[str, int]:
    """Nemotron-H's hybrid_override_pattern: one character per layer, M Mamba-2, * attention,
    - MLP, E mixture of experts."""
    unknown = set(pattern) - set("M*-E")
    if unknown:
        raise HfConfigError(f"hybrid_override_pattern has unknown layer kinds {sorted(unknown)}")
    return {kind: pattern.count(kind) for kind in "M*-E"}


def _nas_blocks(config: Mapping[str, Any], hidden: int, heads: int) -> dict[str, int | None]:
    """Llama-Nemotron NAS (DeciLM) block_configs: layers with no attention or no MLP, per-layer
    KV groups and MLP widths: the mean width counts the parameters, the widest sizes the
    activations."""
    attention, kv_heads, mlp, intermediate, widest = 0, 0, 0, 0, 0
    for block in config["block_configs"]:
        attn, ffn = block.get("attention", {}), block.get("ffn", {})
        if not attn.get("no_op") and not attn.get("replace_with_linear"):
            attention += 1
            kv_heads = max(kv_heads, heads // int(attn.get("n_heads_in_group") or 1))
        if not ffn.get("no_op") and not ffn.get("replace_with_linear"):
            size = 256 * math.ceil(int(2 * float(ffn["ffn_mult"]) * hidden / 3) / 256)
            mlp, intermediate, widest = mlp + 1, intermediate + size, max(widest, size)
    return {
        "attention_layers": attention,
        "kv_heads": max(kv_heads, 1),
        "mlp_layers": mlp,
        "intermediate_size": intermediate // max(mlp, 1),
        "widest_intermediate_size": widest or None,
    }


def architecture_from_hf_config(config: Mapping[str, Any]) -> Architecture:
    """The model facts of a Hugging Face config.json (as a dict); parameters counted from it."""
    if not isinstance(config, Mapping):
        raise HfConfigError("config.json must be a JSON object")
    text = _text_config(config)
    model_type = str(text.get("model_type") or config.get("model_type") or "")
    hidden = _int(text, "hidden_size", "d_model", "n_embd")
    heads = _int(text, "num_attention_heads", "n_head")
    head_dim = _optional_int(text, "head_dim") or hidden // max(heads, 1)
    layers = _int(text, "num_hidden_layers", "n_layer")
    context = _int(
        text,
        "max_position_embeddings",
        "max_sequence_length",
        "seq_length",
        default=_int(config, "max_position_embeddings", default=4096),
    )
    facts: dict[str, Any] = {
        "hidden_size": hidden,
        "attention_heads": heads,
        "head_dim": head_dim,
        "kv_heads": _optional_int(text, "num_key_value_heads") or heads,
        "vocab_size": _int(text, "vocab_size"),
        "tie_word_embeddings": bool(
            text.get("tie_word_embeddings", config.get("tie_word_embeddings", False))
        ),
        "native_context_length": context,
        "attention_layers": layers,
        "intermediate_size": _optional_int(text, "intermediate_size", "ffn_hidden_size"),
        "gated_mlp": _gated(text, model_type),
    }
    experts = _optional_int(text, "n_routed_experts", "num_local_experts", "num_experts")
    if experts:
        moe_layers = layers - _int(text, "first_k_dense_replace", default=0)
        moe_layers -= len(text.get("mlp_only_layers") or [])
        shared_size = _optional_int(text, "shared_expert_intermediate_size") or 0
        shared_size += _int(text, "n_shared_experts", default=0) * _int(
            text, "moe_intermediate_size", default=0
        )
        moe_size = _optional_int(text, "moe_intermediate_size") or _int(text, "intermediate_size")
        facts.update(
            moe_layers=moe_layers,
            experts=experts,
            experts_per_token=_int(text, "num_experts_per_tok", "experts_per_token", "top_k"),
            moe_intermediate_size=moe_size,
            shared_expert_intermediate_size=shared_size,
            mlp_layers=layers - moe_layers,
        )
    if "hybrid_override_pattern" in text:
        kinds = _hybrid_layers(str(text["hybrid_override_pattern"]))
        facts.update(
            attention_layers=kinds["*"],
            mlp_layers=kinds["-"],
            moe_layers=kinds["E"],
            mamba_layers=kinds["M"],
            mamba_heads=_int(text, "mamba_num_heads"),
            mamba_head_dim=_int(text, "mamba_head_dim"),
            ssm_state_size=_int(text, "ssm_state_size"),
            mamba_groups=_int(text, "n_groups", "mamba_n_groups", default=1),
            conv_kernel=_int(text, "conv_kernel", "mamba_d_conv", default=_MAMBA_CONV_KERNEL),
            moe_latent_size=_optional_int(text, "moe_latent_size"),
            shared_expert_intermediate_size=_int(
                text, "moe_shared_expert_intermediate_size", default=0
            )
            * _int(text, "n_shared_experts", default=1 if kinds["E"] else 0),
        )
    if _optional_int(text, "kv_lora_rank"):
        facts.update(
            kv_lora_rank=_int(text, "kv_lora_rank"),
            q_lora_rank=_optional_int(text, "q_lora_rank"),
            qk_rope_head_dim=_int(text, "qk_rope_head_dim"),
            qk_nope_head_dim=_int(text, "qk_nope_head_dim"),
            v_head_dim=_int(text, "v_head_dim"),
            head_dim=_int(text, "qk_nope_head_dim") + _int(text, "qk_rope_head_dim"),
        )
    if isinstance(text.get("block_configs"), list):
        facts.update(_nas_blocks(text, hidden, heads))
    elif model_type == "nemotron-nas" or "DeciLMForCausalLM" in (config.get("architectures") or []):
        raise HfConfigError("config.json of a Llama-Nemotron NAS model has no block_configs")
    if facts.get("mlp_layers", layers) and facts["intermediate_size"] is None:
        raise HfConfigError("config.json has no intermediate_size (the MLP's width)")
    facts.update(_sliding_window(text, facts["attention_layers"]))
    counted = Architecture(parameters=1, active_parameters=1, **facts)
    counts = parameter_counts(counted)
    return counted.model_copy(
        update={"parameters": counts.total, "active_parameters": counts.active(counted)}
    )


def _sliding_window(text: Mapping[str, Any], attention_layers: int) -> dict[str, int]:
    """How many attention layers keep only the last sliding_window tokens: layer_types
    (gpt-oss, Gemma 3, Qwen), else every layer when use_sliding_window or Mistral's window."""
    window = _optional_int(text, "sliding_window")
    if window is None or text.get("use_sliding_window") is False:
        return {}
    layer_types = text.get("layer_types")
    if isinstance(layer_types, list):
        sliding = sum(1 for kind in layer_types if kind == "sliding_attention")
        return {"sliding_window": window, "sliding_window_layers": sliding}
    pattern = _optional_int(text, "sliding_window_pattern")
    if pattern:  # Gemma 3: every pattern-th layer is global
        return {
            "sliding_window": window,
            "sliding_window_layers": attention_layers - attention_layers // pattern,
        }
    if window >= _int(text, "max_position_embeddings", default=window + 1):
        return {}
    return {"sliding_window": window, "sliding_window_layers": attention_layers}


def architecture_from_hf_config_text(text: str) -> Architecture:
    """architecture_from_hf_config of a config.json's text (a ConfigMap's value, a file)."""
    try:
        config = json.loads(text)
    except ValueError as error:
        raise HfConfigError(f"config.json is not valid JSON: {error}") from None
    return architecture_from_hf_config(config)
