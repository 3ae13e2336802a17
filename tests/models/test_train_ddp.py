"""Training under torchrun: two CPU ranks (gloo) train the tiny configuration with
DistributedDataParallel; both hold the same weights afterwards and the loss falls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from synthetic import write_clip

WORKER = Path(__file__).with_name("ddp_worker.py")
STEPS = 6


def test_torchrun_two_ranks_keep_identical_weights_and_lower_the_loss(tmp_path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_clip(videos / "a.mp4", n=30, width=96, height=80, audio=False)
    out = tmp_path / "run"
    out.mkdir()
    config = {
        "preset": "cpu-small",
        "model": {"size": 64, "num_kp": 4, "max_refs": 2},
        "data": {"dirs": [str(videos)], "cache_dir": str(tmp_path / "cache"), "max_frames": 30, "scale_jitter": 0.0,
                 "flip": False, "color_jitter": 0.0},
        "loss": {"perceptual": 0.0},
        "optim": {"lr": 3e-3, "warmup_steps": 0},
        "steps": STEPS, "batch_size": 2, "checkpoint_every": STEPS, "log_every": 1, "eval_every": STEPS,
        "eval_samples": 4, "out_dir": str(out), "threads": 1, "device": "cpu",
    }
    (out / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(WORKER),
           str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]

    ranks = [load_file(str(out / f"rank{r}.safetensors")) for r in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # weights and batch-norm statistics
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(STEPS + 1))
    total = [r["total"] for r in log[1:]]  # rank 0's training loss, steps 1..STEPS
    assert total[-2] + total[-1] < 0.7 * (total[0] + total[1])
    exported = load_file(str(out / "cpu-small.safetensors"))
    assert all(torch.equal(exported[k].to(ranks[0][k].dtype), ranks[0][k]) for k in exported)
