"""benchmarks/gpu_train.py end to end in its CPU smoke mode: one JSON object with every figure per run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_train.py"


def test_gpu_benchmark_smoke_prints_its_figures(tmp_path):
    cmd = [sys.executable, str(BENCH), "--smoke", "--no-open-clip", "--threads", "1", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True)
    result = json.loads(proc.stdout)
    assert result["device"] == "cpu" and result["peak_tflops_bf16"] is None
    runs = {(r["preset"], r["mode"], r["trainer"]): r for r in result["results"]}
    assert set(runs) == {("tiny", "image-text", "mmpt"), ("tiny", "trimodal", "mmpt")}
    for r in runs.values():
        assert r["samples_per_s"] > 0 and r["step_ms_median"] > 0 and r["compile"] is False
        assert 0.0 <= r["data_wait_frac"] <= 1.0 and r["peak_mem_gb"] > 0
        assert r["achieved_tflops"] > 0 and r["mfu"] is None  # no bf16 peak known for a CPU
    # the audio tower and two more pairs cost FLOPs: the count sees them
    assert (
        runs["tiny", "trimodal", "mmpt"]["gflops_per_step"]
        > runs["tiny", "image-text", "mmpt"]["gflops_per_step"]
    )


def test_mfu_uses_the_peak_of_the_device_named():
    sys.path.insert(0, str(BENCH.parent))
    import gpu_train

    assert gpu_train.device_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_train.device_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_train.device_peak_tflops("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu_train.device_peak_tflops("NVIDIA H200") == 989.4
    assert gpu_train.device_peak_tflops("some other card") == 0.0
    r = gpu_train._with_mfu({"samples_per_s": 200.0}, flops=int(4.947e12), batch=100, peak_tflops=989.4)
    assert r["achieved_tflops"] == 9.894 and r["mfu"] == 0.01
