"""What the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status), which Flux's health checks
and `wait: true` use, computes for Kubernetes objects: run by the library itself, built once
from the Go module proxy (build.sh) and cached.

    kubectl get nemotrondeployments -o json | python hack/kstatus/kstatus.py -
    python hack/kstatus/kstatus.py FILE.yaml ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent


def binary() -> Path:
    """The kstatus program, built first when this version of it is not in the cache yet."""
    built = subprocess.run(
        ["bash", str(HERE / "build.sh")], check=True, capture_output=True, text=True
    )
    return Path(built.stdout.strip().splitlines()[-1])


def compute(objects: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The library's {name, status, message} for each object, in order."""
    answer = subprocess.run(
        [str(binary())], input=json.dumps(list(objects)), check=True, capture_output=True, text=True
    )
    results: list[dict[str, str]] = json.loads(answer.stdout)
    return results


def objects_in(documents: Iterable[Any]) -> list[Mapping[str, Any]]:
    """The objects of YAML/JSON documents: a `kind: List` (kubectl get -o json) or a JSON array
    unpacked."""
    found: list[Mapping[str, Any]] = []
    for document in documents:
        if isinstance(document, list):
            found += objects_in(document)
        elif isinstance(document, Mapping) and str(document.get("kind", "")).endswith("List"):
            found += objects_in(document.get("items") or [])
        elif isinstance(document, Mapping):
            found.append(document)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="YAML or JSON files of objects; - for stdin")
    parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    args = parser.parse_args(argv)
    documents: list[Any] = []
    for file in args.files:
        text = sys.stdin.read() if file == "-" else Path(file).read_text()
        documents += yaml.safe_load_all(text)
    results = compute(objects_in(documents))
    if args.output == "json":
        print(json.dumps(results, indent=2))
        return 0
    width = max((len(r["name"]) for r in results), default=4)
    print(f"{'NAME':<{width}}  {'STATUS':<11}  MESSAGE")
    for result in results:
        print(f"{result['name']:<{width}}  {result['status']:<11}  {result['message']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
