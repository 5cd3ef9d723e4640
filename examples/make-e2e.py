#!/usr/bin/env python3
"""Writes examples/e2e/: made-up E2E results in the team's nested layout, for `kvxfer analyze`.

The figures are illustrative, not measurements: TTFT = prefill (0.1 ms per prompt token) plus a
network part that grows with concurrency (more over tcp than over efa), TPOT about 12 ms. One
JSON per pattern under phase-15/<mode>-<backend>/, as the team's benchmark writes them.
"""

import json
import os

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "e2e")
KV_BYTES_PER_TOKEN = 57344  # Qwen2.5-7B, bf16


def ttft(backend, tokens, c):
    prefill = 0.1 * tokens
    if backend == "tcp":
        net, growth = 3.0 * tokens * KV_BYTES_PER_TOKEN / 2.9e6, 1.0 + 1.72 * (c - 1) / 15.0
    elif backend == "efa":
        net, growth = 3.0 * tokens * KV_BYTES_PER_TOKEN / 4.4e6, 1.0 + 0.5 * (c - 1) / 15.0
    else:
        net, growth = 0.0, 1.0
    return round((prefill + net) * growth, 3)


def tpot(backend, c):
    return round(12.0 + 0.05 * c + (0.1 if backend == "efa" else 0.0), 3)


def summary(mean):
    return {"p50": mean, "p95": round(mean * 1.2, 3), "p99": round(mean * 1.3, 3), "mean": mean}


def main():
    for backend in ("none", "tcp", "efa"):
        mode = "unified" if backend == "none" else "disaggregated"
        folder = os.path.join(HERE, "phase-15", f"{mode}-{backend}")
        os.makedirs(folder, exist_ok=True)
        for tokens in (4096, 12288):
            for c in (1, 4, 16):
                t, p = ttft(backend, tokens, c), tpot(backend, c)
                results = {
                    "ttft": summary(t),
                    "tpot": summary(p),
                    "e2e_latency": summary(round(t + 128 * p, 3)),
                    "throughput_rps": round(c / (t / 1e3), 3),
                }
                if c == 1:
                    results["proxy_prefill_time"] = 0.1 * tokens
                doc = {
                    "metadata": {
                        "phase": 15,
                        "mode": mode,
                        "backend": backend,
                        "prefix_cache": False,
                        "prompt_tokens": tokens,
                        "max_tokens": 128,
                        "warmup_iterations": 2,
                        "measurement_iterations": 10,
                        "concurrency": c,
                        "model": "Qwen/Qwen2.5-7B-Instruct",
                    },
                    "results": results,
                }
                path = os.path.join(folder, f"p15-{backend}-{tokens}-c{c}.json")
                with open(path, "w") as f:
                    json.dump(doc, f, indent=2)
                    f.write("\n")


if __name__ == "__main__":
    main()
