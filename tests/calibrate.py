"""The planner's memory model against NVIDIA's published configurations: `make calibrate`.

The corpus (tests/data/calibration: models.yaml, configurations.yaml, corrections.yaml) holds
NVIDIA's published GPU counts and minimum memory per GPU. Two comparisons, on the physical
estimate alone (the catalog's published figures are not used, so this calibrates physics):

* GPU counts. Rows are grouped by (model, GPU, precision, maxModelLength); NVIDIA's count is the
  smallest among the group's non-latency rows (latency profiles buy speed with GPUs). Ours is
  the fewest GPUs (TP within a node of 8, 4 for GB200/GB300, then PP) whose estimate fits the
  usable memory, among the layouts NVIDIA ships engines for where a quantized precision has
  only prebuilt engines on that GPU (NIM 1.x TensorRT-LLM rows: a NIM cannot run an engine it
  does not ship, however much memory is free; shipped_engines), which the report lists as
  'engines'. Exact, over-ask (ours larger) and under-ask (ours smaller) are counted apart;
  an under-ask where NVIDIA states a minimum (a 'published minimum', 'model-card minimum' or
  NIM 2.x 'generic' row) would be a NIM that cannot start.
  A row whose source does not state the context is scored at the model's default context, which
  is what vLLM (NIM 2.x) runs without one, and which it refuses to start without room for. A
  TensorRT-LLM row without a stated context says less: TensorRT-LLM starts even when its KV
  cache cannot hold one sequence of the engine's longest (it shortens the attention window;
  failing instead is opt-in since TensorRT-LLM PR 5974). Where ours exceeds NVIDIA's count
  there, the row is scored at the longest shorter context (halving, down to 4096 tokens) at
  which our count meets NVIDIA's, and the report names that context.
  Every row is weighed with vLLM's rule (0.9 of CUDA's total for everything; NIM's documented
  --gpu-memory-utilization), on the GPU's interconnect (gpus.yaml's nvlinkSwitch).
  TensorRT-LLM's own rule (its KV cache takes 0.9 of the memory the weights and activations
  leave free) was tried on its rows twice: 81 exact instead of 82 and 7 under-asks instead of 5,
  one on a published minimum (Super NVFP4 on one H100); then, with the PCIe overhead, 57 of 66
  tuning and 23 of 28 held-out groups (split by engine) against 59 of 64 and 24 of 26, with 6
  under-asks on stated minimums. Its engines need memory the parts do not model, so the
  stricter rule stays.
* Minimum memory. A NIM 2.x manifest's minimum per GPU at a tensor-parallel size: ours must
  not be lower, beyond NVIDIA's rounding to whole GB.

Held out: a third of the (model, GPU, precision, context) groups and of the minimum-memory
figures, picked by a hash of the group's key (`held_out`), not by their outcome. Changes to the
model are tuned on the rest; the held-out figures are reported apart, as totals only (their
disagreements are listed with `--all`), so agreement that holds there is not fitted.

Run as `python -m tests.calibrate [--all]` from the repository root (with operator/ on
PYTHONPATH).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nemotron_operator.core.catalog import Architecture, Catalog, load_catalog
from nemotron_operator.core.hf_config import HfConfigError, architecture_from_hf_config
from nemotron_operator.core.planner import (
    SHORTEST_SUGGESTED_CONTEXT,
    MemoryFacts,
    memory_facts,
    memory_need,
    parallel_layouts,
    usable_gib,
)

CORPUS = Path(__file__).resolve().parent / "data" / "calibration"
GPUS_PER_NODE = {"NVIDIA-GB200": 4, "NVIDIA-GB300": 4}  # a GB200/GB300 NVL compute tray
DEFAULT_GPUS_PER_NODE = 8
# Statements of more GPUs than needed, for speed: latency profiles, NIM Turbo, and performance
# recipes (TensorRT-LLM, Dynamo) at a traffic pattern.
SPEED_PROFILES = ("latency", "turbo", "trtllm-recipe", "dynamo-recipe")
MINIMUM_PROFILES = ("published minimum", "model-card minimum", "generic")
ADAPTER_PROFILES = ("generic-lora",)  # room for LoRA adapters, which the planner does not plan
ROUNDING_GIB = 1.0
MINIMUM_MARK = " [minimum published]"  # NVIDIA publishes minimum memory in whole GB
HELD_OUT_SHARE = 3  # one group in three is held out
# NIM 1.x optimized profiles (the corpus' TensorRT-LLM 'throughput', 'latency' and
# 'throughput-lora' rows) are engines NVIDIA prebuilds per GPU, precision and tensor-parallel
# size; a NIM runs no engine it does not ship. Its other profiles are generic ones for any GPU
# with enough memory, built from the 16-bit checkpoint at any size (vllm-bf16-tpN,
# tensorrt_llm-trtllm_buildable-bf16-tpN: docs.nvidia.com/nim/large-language-models/1.3.0/
# profiles.html). So a quantized precision runs on a GPU only at the sizes its rows list.
PREBUILT_ENGINE_PROFILES = ("throughput", "latency", "throughput-lora")
GENERIC_PROFILE_PRECISIONS = ("bf16", "fp16")


def held_out(*key: object) -> bool:
    """Whether the group with this key is held out of tuning: a fixed hash of the key, so the
    split does not depend on any outcome and stays the same from run to run."""
    digest = hashlib.sha256("|".join(map(str, key)).encode()).digest()
    return digest[0] % HELD_OUT_SHARE == 0


@dataclass(frozen=True)
class CountVerdict:
    """Our GPU count against NVIDIA's for one (model, GPU, precision, context)."""

    model: str
    gpu_product: str
    precision: str
    max_model_length: int
    nvidia: int
    ours: int | None  # None: does not fit on 8 nodes
    ours_by_memory: int | None  # ours were any layout shipped: the estimate alone
    shipped: tuple[int, ...]  # GPU counts of the engines shipped for it; () when any runs
    shipped_sources: tuple[str, ...]  # where NVIDIA lists those engines
    scored_context: int  # max_model_length, or the shorter context a row without one implies
    minimum_published: bool
    statements: tuple[str, ...]  # the kinds of NVIDIA's statements of its count (row profiles)
    usable_gib: float
    need_at_nvidia_gib: float  # our estimate per GPU at NVIDIA's count
    need_at_ours_gib: float | None
    sources: tuple[str, ...]

    @property
    def held_out(self) -> bool:
        return held_out(self.model, self.gpu_product, self.precision, self.max_model_length)

    @property
    def context_implied(self) -> bool:
        """Scored at a shorter context than the row's, which the source leaves open."""
        return self.scored_context != self.max_model_length

    @property
    def set_by_shipped_engines(self) -> bool:
        """Ours is more than memory needs because no engine ships at the fewer GPUs."""
        return self.ours != self.ours_by_memory

    @property
    def outcome(self) -> str:
        if self.ours == self.nvidia:
            return "exact"
        return "over" if self.ours is None or self.ours > self.nvidia else "under"


@dataclass(frozen=True)
class MemoryVerdict:
    """Our need per GPU against a manifest's minimum at one tensor-parallel size."""

    model: str
    precision: str
    max_model_length: int
    tp: int
    nvidia_gib: float
    ours_gib: float
    source: str

    @property
    def held_out(self) -> bool:
        return held_out(self.model, self.precision, self.tp, self.max_model_length)

    @property
    def under(self) -> bool:
        return self.ours_gib < self.nvidia_gib - ROUNDING_GIB


@dataclass(frozen=True)
class Score:
    counts: tuple[CountVerdict, ...]
    memory: tuple[MemoryVerdict, ...]
    skipped: tuple[str, ...]  # rows that cannot be scored, and why

    def tally(self, outcome: str) -> int:
        return sum(1 for verdict in self.counts if verdict.outcome == outcome)

    @property
    def exact_share(self) -> float:
        return self.tally("exact") / len(self.counts)

    @property
    def exact_at_implied_context(self) -> int:
        return sum(1 for v in self.counts if v.outcome == "exact" and v.context_implied)

    @property
    def exact_by_shipped_engines(self) -> int:
        return sum(1 for v in self.counts if v.outcome == "exact" and v.set_by_shipped_engines)

    @property
    def under_where_minimum_published(self) -> int:
        return sum(1 for v in self.counts if v.outcome == "under" and v.minimum_published)

    @property
    def memory_under(self) -> int:
        return sum(1 for verdict in self.memory if verdict.under)

    def split(self, held: bool) -> Score:
        """The held-out part (held=True) or the tuning part of the score."""
        return Score(
            tuple(v for v in self.counts if v.held_out == held),
            tuple(v for v in self.memory if v.held_out == held),
            self.skipped,
        )


def _merged_models(models: Mapping[str, Any], corrections: Mapping[str, Any]) -> dict[str, Any]:
    merged = {key: dict(entry) for key, entry in models.items()}
    for key, fields in (corrections.get("models") or {}).items():
        if key in merged:
            merged[key].update({k: v for k, v in fields.items() if k != "source"})
    return merged


def as_config(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as a config.json: its verbatim config when the corpus has one, else its fields
    (named as in config.json), layer_counts turned into a hybrid pattern."""
    config = dict(entry.get("config") or entry)
    counts = entry.get("layer_counts")
    if isinstance(counts, Mapping) and "hybrid_override_pattern" not in config:
        config["hybrid_override_pattern"] = (
            "M" * counts.get("mamba2", 0)
            + "E" * counts.get("moe", 0)
            + "*" * counts.get("attention", 0)
            + "-" * counts.get("mlp", 0)
        )
        config.setdefault("mlp_hidden_act", "relu2")  # Nemotron-H's MLPs and experts
    blocks = entry.get("block_counts")
    if isinstance(blocks, list) and "block_configs" not in config:  # NAS blocks by kind
        config["block_configs"] = [
            {
                "attention": {"n_heads_in_group": 8} if group["attention"] else {"no_op": True},
                "ffn": {"ffn_mult": group["ffn_mult"]},
            }
            for group in blocks
            for _ in range(group["count"])
        ]
    kinds = entry.get("layer_types")
    if isinstance(kinds, Mapping):  # counts by kind, as the corpus gives them
        config["layer_types"] = [kind for kind, count in kinds.items() for _ in range(count)]
    return config


def _corrected_rows(
    rows: Iterable[Mapping[str, Any]], corrections: Mapping[str, Any]
) -> list[dict[str, Any]]:
    fixed = [dict(row) for row in rows]
    for correction in corrections.get("configurations") or []:
        for row in fixed:
            if all(row.get(key) == value for key, value in correction["match"].items()):
                row.update(correction["set"])
    return fixed


def corpus_models() -> dict[str, Any]:
    """models.yaml with corrections.yaml's model facts merged over it."""
    return _merged_models(_load("models.yaml")["models"], _load("corrections.yaml") or {})


def corpus_rows() -> list[dict[str, Any]]:
    """configurations.yaml's rows with corrections.yaml's fixes applied."""
    corrections = _load("corrections.yaml") or {}
    return _corrected_rows(_load("configurations.yaml")["configurations"], corrections)


def counted_architecture(entry: Mapping[str, Any]) -> Architecture:
    """The corpus entry's facts through the same reader `plan --hf-config` uses."""
    return architecture_from_hf_config(as_config(entry))


def corpus_architecture(entry: Mapping[str, Any]) -> Architecture:
    """What the planner sizes a corpus model with: the config's widths, and the published
    parameter counts (what the checkpoint holds, MTP heads included where given). A config too
    incomplete to count from gives only the basic facts; the widths are then estimated from
    the parameters."""
    held = entry.get("checkpoint_parameters_b") or entry["parameters_b"]  # MTP heads included
    published = {
        "parameters": round(float(held) * 1e9),
        "active_parameters": round(float(entry["active_parameters_b"]) * 1e9),
    }
    try:
        return counted_architecture(entry).model_copy(update=published)
    except HfConfigError:
        heads = int(entry["num_attention_heads"])
        hidden = entry.get("hidden_size")
        layers = (entry.get("layer_counts") or {}).get("attention") or entry["num_hidden_layers"]
        return Architecture(
            **published,
            attention_layers=layers,
            kv_heads=int(entry.get("num_key_value_heads") or heads),
            head_dim=int(entry.get("head_dim") or hidden // heads),
            native_context_length=int(entry["max_position_embeddings"]),
            hidden_size=hidden,
            attention_heads=heads,
            vocab_size=entry.get("vocab_size"),
        )


def _load(name: str) -> Any:
    path = CORPUS / name
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}


def _memory_mib(catalog: Catalog, product: str) -> int:
    gpu = catalog.gpu(product)
    assert gpu is not None
    return gpu.memory_mib


@dataclass(frozen=True)
class ShippedEngines:
    """The prebuilt engines NVIDIA lists for a model, GPU and quantized precision."""

    layouts: frozenset[tuple[int, int]]  # (TP, PP)
    sources: tuple[str, ...]  # the lists' URLs


def shipped_engines(
    rows: Iterable[Mapping[str, Any]],
) -> dict[tuple[str, str, str], ShippedEngines]:
    """(model, GPU product, precision) -> the engines NVIDIA ships, where the precision runs
    only on those: a quantized one with prebuilt engines (see PREBUILT_ENGINE_PROFILES), all of
    its rows' sources together."""
    shipped: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for row in rows:
        if (
            row.get("kind") != "gpu_count"
            or row.get("engine") != "tensorrt_llm"
            or row["profile"] not in PREBUILT_ENGINE_PROFILES
            or row["precision"] in GENERIC_PROFILE_PRECISIONS
            or row.get("gpu_product") is None
        ):
            continue
        shipped.setdefault((row["model"], row["gpu_product"], row["precision"]), []).append(row)
    return {
        key: ShippedEngines(
            frozenset(
                (int(r["gpus"]) // int(r.get("nodes") or 1), int(r.get("nodes") or 1))
                for r in listed
            ),
            tuple(sorted({str(r["source"]) for r in listed})),
        )
        for key, listed in shipped.items()
    }


def fewest_gpus_estimated(
    facts: MemoryFacts,
    precision: str,
    tokens: int,
    usable: float,
    gpus_per_node: int,
    nvlink_switch: bool = True,
    shipped: frozenset[tuple[int, int]] | None = None,
) -> tuple[int, int] | None:
    """In the planner's order of layouts, by its memory estimate alone: the first (TP, PP) whose
    need fits `usable` GiB per GPU, or None; among the `shipped` layouts only, when the release
    ships the precision on this GPU only at those (prebuilt engines: a NIM runs no layout it
    does not ship)."""
    return next(
        (
            (tp, pp)
            for tp, pp in parallel_layouts(gpus_per_node)
            if (shipped is None or (tp, pp) in shipped)
            and memory_need(facts, precision, tokens, tp, pp, nvlink_switch).total <= usable
        ),
        None,
    )


def layouts_by_context(
    facts: MemoryFacts,
    precision: str,
    usable: float,
    gpus_per_node: int,
    nvlink_switch: bool,
    shipped: frozenset[tuple[int, int]] | None = None,
) -> Callable[[int], tuple[int, int] | None]:
    """The planner's fewest-GPU layout for the model on one GPU product, by maxModelLength;
    among the `shipped` layouts only, when given."""
    return lambda tokens: fewest_gpus_estimated(
        facts, precision, tokens, usable, gpus_per_node, nvlink_switch, shipped
    )


def _count(layout: tuple[int, int] | None) -> float:
    return layout[0] * layout[1] if layout else math.inf


def _context_open(row: Mapping[str, Any]) -> bool:
    """Whether the row's count leaves its context open: a TensorRT-LLM engine's, without a
    stated context (it starts with whatever window its KV cache holds)."""
    return row.get("engine") == "tensorrt_llm" and row.get("context_stated") is False


def _implied_context(
    fewest: Callable[[int], tuple[int, int] | None], length: int, nvidia: int
) -> int | None:
    """The longest context below `length` (halving, down to the shortest the planner suggests)
    at which our count is NVIDIA's; None when none is."""
    tokens = length // 2
    while tokens >= SHORTEST_SUGGESTED_CONTEXT:
        count = _count(fewest(tokens))
        if count <= nvidia:
            return tokens if count == nvidia else None
        tokens //= 2
    return None


def _count_verdicts(
    rows: Sequence[Mapping[str, Any]],
    facts: Mapping[str, MemoryFacts],
    catalog: Catalog,
    skipped: list[str],
) -> list[CountVerdict]:
    engines = shipped_engines(rows)
    groups: dict[tuple[str, str, str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        if row.get("kind") != "gpu_count" or row["profile"].startswith(SPEED_PROFILES):
            continue
        product = row.get("gpu_product")
        if row["model"] not in facts:
            skipped.append(f"{row['model']}: not in models.yaml")
            continue
        if product is None or catalog.gpu(product) is None:
            skipped.append(f"{row['model']} on {row['gpu']}: GPU not in the catalog")
            continue
        key = (row["model"], product, row["precision"], int(row["max_model_length"]))
        groups.setdefault(key, []).append(row)
    memory = {key: _memory_mib(catalog, key[1]) for key in groups}
    verdicts = []
    for (model, product, precision, length), group in sorted(groups.items()):
        # NVIDIA's count on this GPU, or on a GPU with no more memory: a replica that fits N
        # smaller GPUs fits N of these
        same = [
            rows
            for key, rows in groups.items()
            if key[0::2] == (model, precision)
            and key[3] == length
            and memory[key] <= memory[(model, product, precision, length)]
        ]
        group = [row for rows in same for row in rows]
        gpu = catalog.gpu(product)
        assert gpu is not None
        usable = usable_gib(gpu.memory_mib)
        per_node = GPUS_PER_NODE.get(product, DEFAULT_GPUS_PER_NODE)
        nvidia = min(int(row["gpus"]) for row in group)

        listed = engines.get((model, product, precision))
        shipped = listed.layouts if listed else None
        switch = gpu.nvlink_switch
        fewest = layouts_by_context(facts[model], precision, usable, per_node, switch, shipped)
        scored = length
        layout = fewest(length)
        counting = [row for row in group if int(row["gpus"]) == nvidia]
        if _count(layout) > nvidia and all(map(_context_open, counting)):
            shorter = _implied_context(fewest, length, nvidia)
            if shorter is not None:
                scored, layout = shorter, fewest(shorter)
        ours = layout[0] * layout[1] if layout else None
        by_memory = fewest_gpus_estimated(facts[model], precision, scored, usable, per_node, switch)
        nvidia_layout = (min(nvidia, per_node), max(nvidia // per_node, 1))
        need = memory_need(facts[model], precision, scored, *nvidia_layout, switch).total
        ours_need = (
            memory_need(facts[model], precision, scored, *layout, switch).total if layout else None
        )
        verdicts.append(
            CountVerdict(
                model=model,
                gpu_product=product,
                precision=precision,
                max_model_length=length,
                nvidia=nvidia,
                ours=ours,
                ours_by_memory=by_memory[0] * by_memory[1] if by_memory else None,
                shipped=tuple(sorted(tp * pp for tp, pp in shipped or ())),
                shipped_sources=listed.sources if listed else (),
                scored_context=scored,
                minimum_published=any(row["profile"] in MINIMUM_PROFILES for row in group),
                statements=tuple(sorted({str(row["profile"]) for row in counting})),
                usable_gib=usable,
                need_at_nvidia_gib=need,
                need_at_ours_gib=ours_need,
                sources=tuple(sorted({str(row["source"]) for row in group})),
            )
        )
    return verdicts


def _memory_verdicts(
    rows: Iterable[Mapping[str, Any]], facts: Mapping[str, MemoryFacts]
) -> list[MemoryVerdict]:
    verdicts = []
    for row in rows:
        if row.get("kind") != "min_memory" or row["model"] not in facts:
            continue
        if row["profile"] in ADAPTER_PROFILES:
            continue
        tp, length = int(row["gpus"]), int(row["max_model_length"])
        ours = memory_need(facts[row["model"]], row["precision"], length, tp).total
        verdicts.append(
            MemoryVerdict(
                model=row["model"],
                precision=row["precision"],
                max_model_length=length,
                tp=tp,
                nvidia_gib=float(row["min_memory_gib_per_gpu"]),
                ours_gib=ours,
                source=str(row["source"]),
            )
        )
    return verdicts


def score(catalog: Catalog | None = None) -> Score:
    """The planner's estimate against the whole corpus."""
    catalog = catalog or load_catalog()
    facts = {key: memory_facts(corpus_architecture(e)) for key, e in corpus_models().items()}
    rows = corpus_rows()
    skipped: list[str] = []
    counts = _count_verdicts(rows, facts, catalog, skipped)
    return Score(tuple(counts), tuple(_memory_verdicts(rows, facts)), tuple(sorted(set(skipped))))


def _summary(label: str, result: Score) -> str:
    return (
        f"  {label:<9} exact {result.tally('exact')}/{len(result.counts)} "
        f"({result.exact_share:.1%}), over-asks {result.tally('over')}, under-asks "
        f"{result.tally('under')} ({result.under_where_minimum_published} where NVIDIA states a "
        f"minimum); minimum memory: ours lower on {result.memory_under} of {len(result.memory)}"
    )


def report(result: Score, show_held_out: bool = False) -> str:
    """The agreement, all rows then tuning and held-out apart, and each disagreement with its
    numbers: the tuning rows' only, unless `show_held_out`."""
    total = len(result.counts)
    lines = [
        f"GPU counts: {total} published configurations (model, GPU, precision, context)",
        f"  exact {result.tally('exact')} ({result.exact_share:.1%}), over-asks "
        f"{result.tally('over')}, under-asks {result.tally('under')} "
        f"({result.under_where_minimum_published} where NVIDIA states a minimum); "
        f"{result.exact_at_implied_context} of the exact at a context the source leaves open, "
        f"{result.exact_by_shipped_engines} at more GPUs than memory needs, as NVIDIA ships no "
        "engine on fewer",
        _summary("tuning", result.split(held=False)),
        _summary("held-out", result.split(held=True)),
    ]
    listed = result if show_held_out else result.split(held=False)
    for verdict in listed.counts:
        if verdict.context_implied:
            lines.append(
                f"  context {verdict.model} {verdict.precision} on {verdict.gpu_product}: "
                f"NVIDIA's TensorRT-LLM count {verdict.nvidia} (context not stated) is ours at "
                f"maxModelLength {verdict.scored_context}, not at {verdict.max_model_length}"
            )
        if verdict.set_by_shipped_engines:
            lines.append(
                f"  engines {verdict.model} {verdict.precision} on {verdict.gpu_product}: "
                f"NVIDIA ships {verdict.precision} engines for it on "
                f"{', '.join(map(str, verdict.shipped))} GPUs only; memory alone fits "
                f"{verdict.ours_by_memory} ({', '.join(verdict.shipped_sources)})"
            )
        if verdict.outcome == "exact":
            continue
        ours = verdict.need_at_ours_gib
        lines.append(
            f"  {verdict.outcome:<5} {verdict.model} {verdict.precision} on {verdict.gpu_product} "
            f"at {verdict.max_model_length} tokens: NVIDIA {verdict.nvidia} GPUs (our need "
            f"{verdict.need_at_nvidia_gib:.1f} GiB/GPU there), ours {verdict.ours} "
            f"({f'{ours:.1f}' if ours is not None else '-'} GiB/GPU); usable "
            f"{verdict.usable_gib:.1f} GiB; NVIDIA's statement: {', '.join(verdict.statements)}"
            f"{MINIMUM_MARK if verdict.minimum_published else ''}"
        )
    lines.append(
        f"Minimum memory per GPU: {len(result.memory)} manifest figures, ours lower than NVIDIA's "
        f"(beyond {ROUNDING_GIB:.0f} GiB rounding) on {result.memory_under}"
    )
    for verdict in listed.memory:
        if verdict.under:
            lines.append(
                f"  under {verdict.model} {verdict.precision} TP{verdict.tp} at "
                f"{verdict.max_model_length}: NVIDIA {verdict.nvidia_gib:.0f} GiB, ours "
                f"{verdict.ours_gib:.1f} GiB"
            )
    if not show_held_out:
        lines.append("  (held-out disagreements not listed: --all lists them)")
    lines += [f"Not scored: {reason}" for reason in result.skipped]
    return "\n".join(lines)


def main() -> int:
    print(report(score(), show_held_out="--all" in sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
