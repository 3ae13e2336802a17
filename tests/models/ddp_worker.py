"""One rank of the torchrun test (tests/models/test_train_ddp.py): trains the tiny configuration in
OUT/config.json with ``avfc.train.train`` and writes the weights this rank holds afterwards to
OUT/rank<R>.safetensors (rank 0 also exports, as every run does).

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/models/ddp_worker.py OUT
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from avfc.train import train
from avfc.train.configs import ModelConfig, load_config


def main(out: Path) -> int:
    torch.set_num_threads(1)
    built = []
    build = ModelConfig.build

    def keep(self: ModelConfig):  # the model train() builds, to read its weights afterwards
        model = build(self)
        built.append(model)
        return model

    ModelConfig.build = keep  # type: ignore[method-assign]
    train(load_config(str(out / "config.json")), progress=False)
    rank = int(os.environ["RANK"])
    state = {k: v.detach().cpu().contiguous() for k, v in built[0].state_dict().items()}
    save_file(state, str(out / f"rank{rank}.safetensors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
