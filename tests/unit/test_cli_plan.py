"""`nemotron-operator plan`, `crd` and `catalog` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nemotron_operator.api.crd import crd_yaml
from nemotron_operator.cli import main

REPO = Path(__file__).resolve().parents[2]
SUPER = """
apiVersion: nemotron.dev/v1alpha1
kind: NemotronDeployment
metadata: {name: super}
spec:
  model: nemotron-3-super
  precision: fp8
"""
H100 = ["--gpu-product", "NVIDIA-H100-80GB-HBM3", "--gpus-per-node", "8", "--nodes", "1"]


def write(tmp_path: Path, text: str, name: str = "nd.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_plan_json_carries_the_decision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", write(tmp_path, SUPER), "-o", "json", *H100], capsys)
    result = json.loads(out)
    assert code == 0
    assert result["image"] == "nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b:2.1.5"
    assert (result["precision"], result["tensorParallelSize"], result["pipelineParallelSize"]) == (
        "fp8",
        2,
        1,
    )
    assert (result["gpusPerReplica"], result["nodesPerReplica"]) == (2, 1)
    assert result["gpuProduct"] == "NVIDIA-H100-80GB-HBM3"
    assert result["profile"] == "vllm-fp8-tp2-pp1"
    assert (result["memoryPerGPUGiB"], result["usablePerGPUGiB"]) == (65.0, 71.1)
    # the estimate's parts beside NVIDIA's figure: the 120 GiB fp8 checkpoint over 2 GPUs, ...
    assert result["weightsGiB"] == 60.0
    parts = ("weightsGiB", "kvCacheGiB", "activationsGiB", "overheadGiB")
    assert sum(result[part] for part in parts) == pytest.approx(65.0, abs=1.1)
    assert (result["memorySource"], result["keyRequired"]) == ("published", False)
    assert (result["fits"], result["reason"]) == (True, "Fits")
    assert "65.0 GiB per GPU" in result["message"]


def test_plan_text_says_it_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", write(tmp_path, SUPER), *H100], capsys)
    assert code == 0
    assert out.startswith("super: fits\n")
    assert "NGC key: not required" in out


def test_refusal_exits_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    l40s = ["--gpu-product", "NVIDIA-L40S", "--gpus-per-node", "4"]
    bf16 = SUPER.replace("fp8", "bf16") + "  gpu: {count: 2}\n"
    code, out, _ = run(["plan", write(tmp_path, bf16), *l40s], capsys)
    assert code == 1
    assert "does not fit (InsufficientGPUMemory)" in out
    assert "121.0 GiB per GPU, 39.9 GiB usable" in out


def test_memory_flag_overrides_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["plan", write(tmp_path, SUPER), "-o", "json", "--gpu-product", "NVIDIA-X"]
    code, out, _ = run(
        [*args, "--gpu-memory-mib", "163840", "--gpu-compute-capability", "9.0"], capsys
    )
    assert code == 0 and json.loads(out)["gpusPerReplica"] == 1
    code, out, _ = run([*args, "--gpu-memory-mib", "163840"], capsys)
    assert code == 1 and "does not run fp8 natively" in json.loads(out)["message"]


def test_every_example_file_plans_from_the_cli(capsys: pytest.CaptureFixture[str]) -> None:
    for path in sorted((REPO / "examples").glob("*.yaml")):
        code, _, err = run(["plan", str(path), *H100, "--nodes", "2"], capsys)
        assert code in (0, 1) and err == "", path


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("spec: [", H100, "not valid YAML"),
        ("", H100, "no NemotronDeployment in the file"),
        (SUPER.replace("fp8", "fp4"), H100, 'spec.precision: Unsupported value: "fp4"'),
        (SUPER.replace("model:", "modle:"), H100, "spec.model: Required value (and 1 more)"),
        (SUPER.replace("NemotronDeployment", "Deployment"), H100, "expected apiVersion"),
        (SUPER, ["--gpu-product", "NVIDIA-X"], "NVIDIA-X is not in the catalog"),
        (SUPER, [*H100, "--catalog-overrides", "/absent.yaml"], "cannot read catalog overrides"),
        (SUPER, [], "give the inventory"),
        (SUPER, ["--kubeconfig", "/absent", *H100], "not both"),
        (SUPER, [*H100, "--gpu-compute-capability", "nine"], "expected X.Y"),
        (SUPER, [*H100[:2], "--nodes", "0"], "must be at least 1"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    args: list[str],
    expected: str,
) -> None:
    code, out, err = run(["plan", write(tmp_path, text), *args], capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and expected in err
    assert "Traceback" not in err


def test_missing_file_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["plan", "/no/such/file.yaml", *H100], capsys)
    assert code == 2 and "No such file or directory" in err and err.count("\n") == 1


def test_crd_prints_the_generated_crd(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["crd"], capsys)
    assert code == 0 and out == crd_yaml()


def test_catalog_lists_models_with_key_requirements(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["catalog"], capsys)
    assert code == 0
    assert "nemotron-3-super (llm): nvcr.io/nim/nvidia/nemotron-3-super-120b-a12b" in out
    assert "2.0.9" in out and "NGC key required" in out and "no key" in out
    (production,) = [line for line in out.splitlines() if "-pb" in line]
    assert production.split()[0] == "2.0.4-pb6.0" and "Production Branch" in production
    assert production.endswith("(image nvcr.io/nim/nvidia/nemotron-3-nano-pb6:2.0.4-pb6.0)")


def test_console_script_never_prints_a_traceback(tmp_path: Path) -> None:
    bad = write(tmp_path, "spec: [")
    completed = subprocess.run(
        [sys.executable, "-m", "nemotron_operator.cli", "plan", bad, *H100],
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("nemotron-operator plan: ")
    assert "Traceback" not in completed.stderr


CUSTOM_FROM_CONFIG = """
apiVersion: nemotron.dev/v1alpha1
kind: NemotronDeployment
metadata: {name: nano-from-config}
spec:
  model: custom
  customModel:
    image: nvcr.io/nim/nvidia/llm-nim:2.1.6
    configMapRef: {name: nano-config}
    precisions: [bf16, fp8]
"""


def test_hf_config_sizes_a_custom_model_from_its_config_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tests.unit.test_hf_config import NANO

    config = tmp_path / "config.json"
    config.write_text(json.dumps(NANO))
    args = ["plan", write(tmp_path, CUSTOM_FROM_CONFIG), "-o", "json", *H100]
    code, out, _ = run([*args, "--hf-config", str(config)], capsys)
    result = json.loads(out)
    assert code == 0 and (result["precision"], result["gpusPerReplica"]) == ("fp8", 1)
    assert result["maxModelLength"] == 262144  # the config's max_position_embeddings
    # 31.6e9 parameters counted from the config: fp8 experts, 16-bit embeddings and Mamba
    assert result["weightsGiB"] == pytest.approx(30.9, abs=0.2)
    code, out, _ = run(args, capsys)
    assert code == 1 and json.loads(out)["reason"] == "ModelConfigInvalid"
    code, _, err = run([*args, "--hf-config", str(tmp_path / "missing.json")], capsys)
    assert code == 2 and "missing.json" in err
