"""What NIM's model download prints when it fails, copied from public reports (the kubelet puts
the tail of it in the pod's status: terminationMessagePolicy FallbackToLogsOnError). Shared by the
unit tests of CacheReady and the fake kubelet of the end-to-end tests.

Each text is verbatim but for line wrapping: a report that wrapped a long line for display has it
joined again, as the container printed it."""

from __future__ import annotations

# A key valid for the image (another NIM pulled and ran with it) but without permission for this
# model's NGC repository: NIM's download of the profile's manifest is refused. From a deployment
# record of llama-nemotron-embed-1b-v2, 2026-04-29, in
# https://github.com/cabinrentalsofgeorgia-bit/Fortress-Prime (a document under docs/). It was
# printed by the NIM starting; `download-to-cache` fetches the same profile files from the same
# NGC API and is assumed to print the same (no report of its own output was found).
NGC_PERMISSION_DENIED = "\n".join(
    [
        "INFO 2026-04-29 22:04:02 nim_sdk.py:376] Downloading manifest profile: e28f17c9...",
        'INFO 2026-04-29 22:04:02 tokio.rs:916] "nim/nvidia/llama-nemotron-embed-1b-v2:'
        'fp16-7af2b653": fetching filemap from: https://api.ngc.nvidia.com/v2/org/nim/team/nvidia/'
        "models/llama-nemotron-embed-1b-v2/fp16-7af2b653/files",
        "ERROR 2026-04-29 22:04:03 nim_sdk.py:338] Download failed after 1 attempts. Last "
        "exception: Permission error: The requested operation requires permissions that the user "
        "does not have. This may be due to the user not being a member of the organization that "
        "owns the repo.",
        "nimlib.exceptions.ManifestDownloadError: Error downloading manifest: Permission "
        "error: ...",
    ]
)
