"""One rank of a 2-rank gloo job (run under torchrun by test_ddp.py): the trainer's step and validation.

    python -m torch.distributed.run --nproc_per_node=2 tests/trainer/ddp_scenarios.py SCENARIO OUT_DIR [DATA_DIR]

Each rank joins the process group through the trainer (with the short timeout the test sets in
CELLCHECK_TEST_TIMEOUT_S), runs the scenario and writes OUT_DIR/rank<r>.json. A rank left waiting
in a collective past the timeout raises, and the job fails: that is what the scenarios must avoid.

* nonfinite: DDP steps where only rank 1's image holds a NaN (its loss is non-finite), then a
  finite step, then a stop signal seen by rank 0 only.
* validation: the trainer's validation of 4 crops by a network that takes 2.5 s per crop, with
  a 3 s process-group timeout: longer than the timeout in total and on each rank.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

from cellcheck.classes import CLASS_NAMES, NUM_CLASSES
from cellcheck.intensity import IntensityRule
from trainer.data import read_cases, split_fold
from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss
from trainer.train import join_process_group, leave_process_group, train_step, validate

C = 4


class TinyNet(torch.nn.Module):
    """A one-layer segmentation network; `delay` seconds per forward stand in for a large model's cost."""

    def __init__(self, delay: float = 0.0, classes: int = C) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, classes, 3, padding=1)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.conv(x)


def nonfinite(rank: int) -> dict:
    net = TinyNet()
    model = torch.nn.parallel.DistributedDataParallel(net)
    loss_fn = DeepSupervisionPartialLoss(PartialAnnotationLoss(C))
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    gen = torch.Generator().manual_seed(rank)
    cpu = torch.device("cpu")

    def patches(poison: bool) -> dict:
        image = torch.rand(2, 1, 8, 8, 8, generator=gen)
        if poison:
            image[0, 0, 0, 0, 0] = float("nan")
        return {"image": image, "label": torch.randint(0, C + 1, (2, 1, 8, 8, 8), generator=gen, dtype=torch.uint8),
                "annotated": torch.ones(2, C, dtype=torch.bool)}

    def weights() -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in net.parameters()]).clone()

    start, results = weights(), []
    for poison, stop in ((rank == 1, False), (rank == 1, False), (False, False), (False, rank == 0)):
        loss, stopping = train_step(model, loss_fn, opt, scaler, patches(poison), cpu, None, stop)
        results.append({"skipped": loss is None, "stop": stopping, "moved": not torch.equal(weights(), start)})
    gathered = [torch.empty_like(start) for _ in range(2)]
    dist.all_gather(gathered, weights())
    return {"steps": results, "same_weights": bool(torch.equal(gathered[0], gathered[1]))}


def validation(rank: int, world: int, data: Path) -> dict:
    _, val = split_fold(read_cases(data / "datalist.json", None, NUM_CLASSES), 0)
    crops = [val[0]] * 4  # the same crop four times: equal shares, so no rank waits on another
    roi = [64, 64, 64]  # one window per crop (fixture crops <= 64)
    rule = IntensityRule.for_dtype("uint8")
    t0 = time.perf_counter()
    net = TinyNet(delay=2.5, classes=NUM_CLASSES)
    out = validate(net, crops, roi, CLASS_NAMES, rule, torch.device("cpu"), rank=rank, world=world)
    return {**out, "seconds": time.perf_counter() - t0}


def main(argv: list[str]) -> int:
    scenario, out = argv[1], Path(argv[2])
    rank, world = join_process_group(int(os.environ["CELLCHECK_TEST_TIMEOUT_S"]))
    if scenario == "nonfinite":
        result = nonfinite(rank)
    elif scenario == "validation":
        result = validation(rank, world, Path(argv[3]))
    else:
        raise SystemExit(f"unknown scenario {scenario!r}")
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    return leave_process_group(0, world, barrier=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
