"""The `nemotron-operator` command: one small function per subcommand, registered in COMMANDS.

A Subcommand has a name, a help line, `add_arguments(parser)` that declares its flags and
`run(args) -> exit code` that does the work. Expected failures (bad files, bad flags) raise
UsageError and end as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from nemotron_operator import docs
from nemotron_operator.api import names
from nemotron_operator.api.crd import CRD_FILES, crd_yaml, write_crd_files
from nemotron_operator.api.rules import admission_errors
from nemotron_operator.api.types import NemotronDeployment, PlanStatus
from nemotron_operator.core.catalog import Catalog, CatalogError, key_requirement, load_catalog
from nemotron_operator.core.diagnose import (
    OUTPUT_FORMATS,
    diagnose_pods,
    format_diagnosis,
    pods_and_events,
)
from nemotron_operator.core.inventory import GpuPool, gpu_pools
from nemotron_operator.core.planner import plan
from nemotron_operator.core.render import RenderError
from nemotron_operator.shell.settings import CATALOG_OVERRIDES_ENV, Settings


class UsageError(Exception):
    """An expected failure: printed as one line, exit code 2."""


def _one_line(error: ValidationError, source: str) -> str:
    """The first cause, in the words the API server would refuse the object with."""
    first, *rest = admission_errors(error)
    more = f" (and {len(rest)} more)" if rest else ""
    return f"{source}: {first}{more}"


def catalog_from_arguments(args: argparse.Namespace) -> Catalog:
    """The catalog, with the overrides of --catalog-overrides (UsageError when unreadable)."""
    try:
        return load_catalog(args.catalog_overrides)
    except CatalogError as error:
        raise UsageError(str(error)) from None


def add_catalog_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--catalog-overrides",
        metavar="FILE",
        default=os.environ.get(CATALOG_OVERRIDES_ENV) or None,
        help="YAML file adding or overriding catalog models, releases and GPUs "
        f"(default: ${CATALOG_OVERRIDES_ENV})",
    )


# --- crd --------------------------------------------------------------------------------------


def _crd_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"write it to {' and '.join(map(str, CRD_FILES))} under the current directory "
        "(the repository root) instead of printing it",
    )


def _crd(args: argparse.Namespace) -> int:
    if not args.write:
        sys.stdout.write(crd_yaml())
        return 0
    try:
        written = write_crd_files(Path.cwd())
    except OSError as error:
        raise UsageError(str(error)) from None
    for path in written:
        print(f"wrote {path}")
    return 0


# --- catalog ----------------------------------------------------------------------------------


def _catalog_arguments(parser: argparse.ArgumentParser) -> None:
    add_catalog_argument(parser)


def _catalog(args: argparse.Namespace) -> int:
    catalog = catalog_from_arguments(args)
    for name, model in sorted(catalog.models.items()):
        print(f"{name} ({model.kind}): {model.image}")
        for release in model.releases:
            key = key_requirement(model, release.tag)
            needs = "NGC key required" if key.required else "no key"
            repository = model.repository_for(release.tag)
            where = f" (image {repository}:{release.tag})" if repository != model.image else ""
            print(
                f"  {release.tag:<16} {', '.join(release.precisions):<18} {needs}: {key.why}{where}"
            )
    return 0


# --- plan -------------------------------------------------------------------------------------


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="NemotronDeployment YAML ('-' for stdin)")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    _add_inventory_arguments(parser)


def _add_inventory_arguments(parser: argparse.ArgumentParser) -> None:
    """The model's config and the GPUs to plan on: from flags, or read from a cluster."""
    parser.add_argument(
        "--hf-config",
        metavar="FILE",
        help="the model's Hugging Face config.json: what customModel.configMapRef's ConfigMap "
        "holds, for a custom model sized from its config",
    )
    flags = parser.add_argument_group("inventory from flags (one pool of identical nodes)")
    flags.add_argument("--gpu-product", metavar="P", help="nvidia.com/gpu.product value")
    flags.add_argument("--gpus-per-node", metavar="N", type=int, default=8)
    flags.add_argument(
        "--gpu-memory-mib", metavar="M", type=int, help="default: the catalog's figure for P"
    )
    flags.add_argument(
        "--gpu-compute-capability",
        metavar="X.Y",
        help="CUDA compute capability (default: the catalog's figure for P)",
    )
    flags.add_argument("--nodes", metavar="K", type=int, default=1)
    cluster = parser.add_argument_group(
        "inventory from a cluster (its GPU nodes now; a NemotronDeployment's own pods count free)"
    )
    cluster.add_argument(
        "--kubeconfig", metavar="PATH", help="read the inventory from this cluster"
    )
    cluster.add_argument(
        "--context", metavar="NAME", help="the kubeconfig's context to read (default: its current)"
    )
    add_catalog_argument(parser)


def _read_deployments(path: str) -> list[NemotronDeployment]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        documents = [d for d in yaml.safe_load_all(text) if d is not None]
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise UsageError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
    if not documents:
        raise UsageError(f"{path}: no NemotronDeployment in the file")
    deployments = []
    for document in documents:
        try:
            deployments.append(NemotronDeployment.model_validate(document))
        except ValidationError as error:
            raise UsageError(_one_line(error, path)) from None
    return deployments


def _flag_node(args: argparse.Namespace, catalog: Catalog, index: int) -> dict[str, Any]:
    """A Node object as the API would return it, built from the inventory flags."""
    entry = catalog.gpu(args.gpu_product)
    memory_mib = args.gpu_memory_mib or (entry.memory_mib if entry else None)
    if memory_mib is None:
        raise UsageError(f"{args.gpu_product} is not in the catalog: give --gpu-memory-mib")
    labels = {
        names.GPU_PRODUCT_LABEL: args.gpu_product,
        names.GPU_MEMORY_LABEL: str(memory_mib),
        names.GPU_COUNT_LABEL: str(args.gpus_per_node),
    }
    compute_capability = args.gpu_compute_capability or (
        entry.compute_capability if entry else None
    )
    if compute_capability is not None:
        major, _, minor = compute_capability.partition(".")
        if not (major.isdigit() and minor.isdigit()):
            raise UsageError(f"--gpu-compute-capability {compute_capability}: expected X.Y")
        labels[names.GPU_COMPUTE_MAJOR_LABEL] = major
        labels[names.GPU_COMPUTE_MINOR_LABEL] = minor
    return {
        "metadata": {"name": f"node-{index}", "labels": labels},
        "status": {"allocatable": {names.GPU_RESOURCE: str(args.gpus_per_node)}},
    }


@dataclass(frozen=True)
class Inventory:
    """The GPUs NemotronDeployments are planned on, and the namespace of those naming none."""

    namespace: str  # the context's, when read from a cluster
    pools_for: Callable[[tuple[str, str]], list[GpuPool]]  # (namespace, name) -> its pools

    def pools(self, deployment: NemotronDeployment) -> list[GpuPool]:
        namespace = deployment.metadata.get("namespace") or self.namespace
        return self.pools_for((namespace, _name(deployment)))


def _inventory(args: argparse.Namespace, catalog: Catalog) -> Inventory:
    if args.kubeconfig or args.context:
        if args.gpu_product:
            raise UsageError("give either --kubeconfig/--context or --gpu-product, not both")
        from nemotron_operator.shell import cluster_view  # the shell: only here, only on demand

        try:
            connection = cluster_view.connect(args.kubeconfig, args.context)
            world = cluster_view.gpu_world(connection.api)
        except cluster_view.CannotAsk as error:
            raise UsageError(f"cannot read the cluster's nodes: {error}") from None
        # a NemotronDeployment's own pods hold GPUs it may plan on again, as the operator counts
        return Inventory(connection.namespace, lambda key: world.snapshot(key).pools)
    if not args.gpu_product:
        raise UsageError("give the inventory: --gpu-product P [...] or --kubeconfig PATH")
    if args.gpus_per_node < 1 or args.nodes < 1:
        raise UsageError("--gpus-per-node and --nodes must be at least 1")
    pools = gpu_pools(_flag_node(args, catalog, index) for index in range(args.nodes))
    return Inventory("default", lambda _: pools)


def _name(deployment: NemotronDeployment) -> str:
    return str(deployment.metadata.get("name") or deployment.spec.model)


def plan_text(name: str, result: PlanStatus) -> str:
    if not result.fits:
        return f"{name}: does not fit ({result.reason})\n  {result.message}\n"
    lines = [f"{name}: fits", f"  {result.message}"]
    for label, value in (
        ("image", result.image),
        ("profile", f"{result.profile} ({result.profile_source})" if result.profile else None),
        ("max model length", result.max_model_length),
        ("cache", result.cache_size),
        (
            "NGC key",
            f"{'required' if result.key_required else 'not required'}: "
            f"{result.key_required_reason}",
        ),
    ):
        if value is not None:
            lines.append(f"  {label}: {value}")
    return "\n".join(lines) + "\n"


def _read_hf_config(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise UsageError(f"{path}: {error.strerror}") from None


def _plan(args: argparse.Namespace) -> int:
    deployments = _read_deployments(args.file)
    hf_config_text = _read_hf_config(args.hf_config)
    catalog = catalog_from_arguments(args)
    inventory = _inventory(args, catalog)
    results = [
        (_name(d), plan(d.spec, catalog, inventory.pools(d), hf_config_text=hf_config_text))
        for d in deployments
    ]
    if args.output == "json":
        dumped = [r.model_dump(mode="json", by_alias=True, exclude_none=True) for _, r in results]
        print(json.dumps(dumped[0] if len(dumped) == 1 else dumped, indent=2))
    else:
        sys.stdout.write("".join(plan_text(name, result) for name, result in results))
    return 0 if all(result.fits for _, result in results) else 1


# --- render: the children, like `helm template` -----------------------------------------------

# What ownerReferences[].uid says of a NemotronDeployment not created yet (the API server gives
# it one when it is): render prints the children to read, not to apply.
UID_NOT_ASSIGNED = "<uid of the NemotronDeployment>"


def _render_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="NemotronDeployment YAML ('-' for stdin)")
    parser.add_argument(
        "-n",
        "--namespace",
        metavar="NAME",
        help="for documents that name none (default: the context's with --kubeconfig/--context, "
        "else default)",
    )
    _add_inventory_arguments(parser)


def _render(args: argparse.Namespace) -> int:
    from nemotron_operator.shell.converge import desired_children

    deployments = _read_deployments(args.file)
    hf_config_text = _read_hf_config(args.hf_config)
    catalog = catalog_from_arguments(args)
    inventory = _inventory(args, catalog)
    documents: list[str] = []
    refusals: list[str] = []
    for deployment in deployments:
        namespace = deployment.metadata.get("namespace") or args.namespace or inventory.namespace
        metadata = {**deployment.metadata, "namespace": namespace}
        deployment = deployment.model_copy(update={"metadata": metadata})
        name = deployment.metadata.get("name")
        if not name:
            raise UsageError(f"{args.file}: metadata.name: Required value")
        result = plan(
            deployment.spec, catalog, inventory.pools(deployment), hf_config_text=hf_config_text
        )
        if not result.fits:
            refusals.append(plan_text(name, result))
            continue
        body = {
            "metadata": {
                "name": name,
                "namespace": namespace,
                "uid": deployment.metadata.get("uid") or UID_NOT_ASSIGNED,
            }
        }
        try:
            children = desired_children(body, deployment.spec, result)
        except RenderError as error:
            refusals.append(f"{name}: cannot render its children: {error}\n")
            continue
        source = f"# Source: {names.KIND} {body['metadata']['namespace']}/{name}: {result.message}"
        documents += [
            f"---\n{source}\n{yaml.safe_dump(child, sort_keys=False, allow_unicode=True)}"
            for child in children
        ]
    if refusals:
        sys.stderr.write("".join(refusals))
        return 1
    sys.stdout.write("".join(documents))
    return 0


# --- run: the operator -----------------------------------------------------------------------


def _run_arguments(parser: argparse.ArgumentParser) -> None:
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="serve NemotronDeployments in every namespace",
    )
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        metavar="NAME_OR_GLOB",
        help="serve only this namespace (repeat; globs such as team-* work)",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve Kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--peering",
        metavar="NAME",
        help="elect one active operator among several (needs Kopf's peering CRDs)",
    )
    parser.add_argument("--priority", type=int, default=0, help="peering priority")
    parser.add_argument("--verbose", "-v", action="store_true", help="log every handler")


def _run(args: argparse.Namespace) -> int:
    from nemotron_operator.shell.runner import run_operator

    try:
        settings = Settings.build(
            os.environ,
            namespaces=args.namespace or (),
            peering=args.peering,
            priority=args.priority,
            liveness_endpoint=args.liveness,
            verbose=args.verbose,
        )
    except ValueError as error:
        raise UsageError(str(error)) from None
    run_operator(settings)
    return 0


# --- diagnose: one NIM pod, with or without the operator ----------------------------------------


def _diagnose_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file",
        help="a Pod, PodList or `kubectl get pod,events -o json` document; - reads standard input",
    )
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default="text")


def _diagnose(args: argparse.Namespace) -> int:
    try:
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        document = json.loads(text)
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {args.file}: {error}") from error
    pods, events = pods_and_events(document)
    if not pods:
        raise UsageError(f"{args.file} holds no Pod")
    print(format_diagnosis(diagnose_pods(pods, events), args.output))
    return 0


# --- docs: the README's generated API reference ---------------------------------------------


def _docs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--write",
        action="store_true",
        help=f"put it into {docs.README} under the current directory (the repository root), "
        "between its markers, instead of printing it",
    )


def _docs(args: argparse.Namespace) -> int:
    if not args.write:
        sys.stdout.write(docs.api_reference())
        return 0
    try:
        changed = docs.write_readme(docs.README)
    except (OSError, docs.MarkersNotFound) as error:
        raise UsageError(f"{docs.README}: {error}") from None
    print(f"{'wrote' if changed else 'unchanged:'} {docs.README}")
    return 0


# --- the command ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: list[Subcommand] = [
    Subcommand("crd", "print the NemotronDeployment CRD as YAML", _crd_arguments, _crd),
    Subcommand(
        "catalog",
        "list catalog models, releases and whether each needs an NGC key",
        _catalog_arguments,
        _catalog,
    ),
    Subcommand(
        "plan",
        "plan NemotronDeployments against GPUs given by flags or read from a cluster "
        "(exit 1 when one does not fit)",
        _plan_arguments,
        _plan,
    ),
    Subcommand(
        "render",
        "print the children the operator would create for NemotronDeployments, as YAML, against "
        "GPUs given by flags or read from a cluster (exit 1 when one does not fit)",
        _render_arguments,
        _render,
    ),
    Subcommand(
        "run",
        "run the operator (Kopf) against the cluster of the kubeconfig or "
        "the in-cluster service account",
        _run_arguments,
        _run,
    ),
    Subcommand(
        "diagnose",
        "say why a NIM pod does not start, from its status and events",
        _diagnose_arguments,
        _diagnose,
    ),
    Subcommand(
        "docs",
        "print the API reference (every spec and status field) as Markdown, from the types",
        _docs_arguments,
        _docs,
    ),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nemotron-operator",
        description="Serve Nemotron models on NVIDIA NIM, sized to the cluster's GPUs.",
    )
    subcommands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        subparser = subcommands.add_parser(
            command.name, help=command.help, description=command.help
        )
        command.add_arguments(subparser)
        subparser.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except UsageError as error:
        print(f"nemotron-operator {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
