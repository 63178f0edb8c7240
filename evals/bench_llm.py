"""Speed of the embedded instruct LLM on this CPU: prefill and decode tokens per second, and
the latency of one constrained constraint parse, per thread count and dtype.

    python -m recagent.evals.bench_llm --threads 1 2 --dtypes bfloat16 float32

Each configuration runs in a fresh process (torch's thread pool is fixed at start), loads the
converted checkpoint, prefills a fixed prompt, decodes greedily, then parses a few demo-shop
requests (the first parse fills the prompt-prefix cache and is reported apart).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["bench_one", "main"]

REQUESTS = (
    "a gift for my dad who loves photography, around 100 dollars",
    "shampoo that isn't from Herbale",
    "cheap running shoes, no Pacer",
    "premium headphones",
    "a tent between $100 and $300",
    "coffee beans that won't break the bank",
)


def bench_one(models_dir: Path, threads: int, dtype: str, decode_tokens: int = 32) -> dict:
    import torch

    torch.set_num_threads(threads)
    from recagent.agent.constraints import ConstraintParser, parse_with_llm
    from recagent.catalog.demo_shop import generate_demo_shop
    from recagent.llm.instruct import InstructLLM

    llm = InstructLLM(models_dir, dtype=dtype)
    started = time.perf_counter()
    model = llm.model
    load_s = time.perf_counter() - started
    prompt = ("Write a short product description for a waterproof two-person tent. " * 12)[:1200]
    ids = llm._prompt_ids(prompt)
    with torch.inference_mode():
        started = time.perf_counter()
        out = model(input_ids=torch.tensor([ids]), use_cache=True, logits_to_keep=1)
        prefill_s = time.perf_counter() - started
        cache, token = out.cache, int(out.logits[0, -1].argmax())
        started = time.perf_counter()
        for _ in range(decode_tokens):
            out = model(input_ids=torch.tensor([[token]]), cache=cache, use_cache=True, logits_to_keep=1)
            cache, token = out.cache, int(out.logits[0, -1].argmax())
        decode_s = time.perf_counter() - started
    parser = ConstraintParser(generate_demo_shop())
    latencies = []
    for message in REQUESTS:
        started = time.perf_counter()
        parse_with_llm(llm, parser, message)
        latencies.append(time.perf_counter() - started)
    warm = latencies[1:]
    return {
        "threads": threads, "dtype": "int8" if llm.quantized else str(llm.dtype).removeprefix("torch."), "load_s": round(load_s, 1),
        "prefill_tokens": len(ids), "prefill_tok_s": round(len(ids) / prefill_s, 1),
        "decode_tok_s": round(decode_tokens / decode_s, 2),
        "parse_first_s": round(latencies[0], 2), "parse_median_s": round(statistics.median(warm), 2),
        "parse_max_s": round(max(warm), 2),
        "loadavg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"])
    ap.add_argument("--models-dir", type=Path, default=None)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.models_dir is None:
        from recagent.app.settings import Settings

        args.models_dir = Settings.from_env().home / "models"
    if args.one:
        print(json.dumps(bench_one(args.models_dir, args.threads[0], args.dtypes[0])))
        return 0
    rows = []
    for dtype in args.dtypes:
        for threads in args.threads:
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            done = subprocess.run(
                [sys.executable, "-m", "recagent.evals.bench_llm", "--one", "--threads", str(threads),
                 "--dtypes", dtype, "--models-dir", str(args.models_dir)],
                env=env, capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
