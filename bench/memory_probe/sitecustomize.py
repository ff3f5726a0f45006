"""Loaded by the operator that bench_memory.py starts (this folder is first on its PYTHONPATH):
traces its allocations with tracemalloc, and writes a snapshot to MEMORY_PROBE_DIR/<tag>.pickle
when bench_memory.py creates MEMORY_PROBE_DIR/<tag>.wanted. Any other Python process with this
folder on its path and without MEMORY_PROBE_DIR is left alone."""

import gc
import os
import threading
import time
import tracemalloc

PROBE_DIR = os.environ.get("MEMORY_PROBE_DIR")
FRAMES = int(os.environ.get("MEMORY_PROBE_FRAMES", "12"))
# imported before tracing starts: traced, importing the API client's CoreV1Api takes minutes
API_CLASSES = (
    "ApiClient",
    "ApiextensionsV1Api",
    "AppsV1Api",
    "BatchV1Api",
    "CoreV1Api",
    "CoreV1Event",
    "CustomObjectsApi",
    "V1EventSource",
    "V1ObjectMeta",
    "V1ObjectReference",
)


def _serve(directory: str) -> None:
    while True:
        for name in os.listdir(directory):
            if name.endswith(".wanted"):
                tag = name.removesuffix(".wanted")
                gc.collect()
                tracemalloc.take_snapshot().dump(os.path.join(directory, f"{tag}.pickle.part"))
                os.rename(
                    os.path.join(directory, f"{tag}.pickle.part"),
                    os.path.join(directory, f"{tag}.pickle"),
                )
                os.remove(os.path.join(directory, name))
        time.sleep(0.5)


if PROBE_DIR:
    import kubernetes.client

    import nemotron_operator.cli
    import nemotron_operator.shell.handlers  # noqa: F401

    for api_class in API_CLASSES:
        getattr(kubernetes.client, api_class)
    tracemalloc.start(FRAMES)
    threading.Thread(target=_serve, args=(PROBE_DIR,), daemon=True, name="memory-probe").start()
