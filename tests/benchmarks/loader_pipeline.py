"""The data side of an Auto3DSeg training job, alone: the pipeline the RAM model describes, to be measured.

    python tests/benchmarks/loader_pipeline.py DATALIST --workers 4 --prefetch 2 --batch 2 --batches 24

A real torch DataLoader (MONAI's) over the datalist's training cases with the template's loading
chain: LoadImaged (image and label to float32, MONAI's default), EnsureChannelFirstd and, with
--one-hot C, AsDiscreted to C float32 channels (the field's expansion, docs/INCIDENTS.md, incident 5); or, with
--chain trainer, cellcheck's trainer transforms (float32 image, uint8 label, --patches patches of
--roi^3 per crop drawn by RandCropByPosNegLabeld, flips). The main process takes `--batches`
batches, touches each as a training step would and holds it for `--step-s` seconds; --shuffle-seed
orders the cases as a shuffling sampler would. Run it under `cellcheck profile` to measure what
`cellcheck.memory.ram` predicts (`loader_memory.py` beside this file does both).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datalist", type=Path)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--prefetch", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--batches", type=int, default=16, help="batches the main process takes, cycling the cases")
    parser.add_argument("--shuffle-seed", dest="shuffle_seed", type=int, default=None,
                        help="shuffle the cases with this seed, as a sampler does each epoch (default: datalist order)")
    parser.add_argument("--one-hot", dest="one_hot", type=int, default=0, help="expand the label to C channels")
    parser.add_argument("--step-s", dest="step_s", type=float, default=0.0, help="seconds each batch is held")
    parser.add_argument("--chain", choices=["template", "trainer"], default="template",
                        help="template: LoadImaged whole crops; trainer: cellcheck's trainer transforms (patches)")
    parser.add_argument("--roi", type=int, default=64, help="trainer chain: patch side")
    parser.add_argument("--patches", type=int, default=2, help="trainer chain: patches per crop")
    args = parser.parse_args(argv)

    import warnings

    import torch
    from monai.data import DataLoader, Dataset
    from monai.transforms import AsDiscreted, Compose, EnsureChannelFirstd, LoadImaged

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="This DataLoader will create")  # more workers than cores: on purpose
    root = args.datalist.parent
    cases = [{"image": str(root / e["image"]), "label": str(root / e["label"])}
             for e in json.loads(args.datalist.read_text())["training"]]
    if args.shuffle_seed is not None:
        import numpy as np

        order = np.random.default_rng(args.shuffle_seed).permutation(len(cases))
        cases = [cases[i] for i in order]
    need = args.batches * args.batch
    items = (cases * (need // len(cases) + 1))[:need]
    if args.chain == "trainer":
        import numpy as np

        from cellcheck.classes import NUM_CLASSES
        from trainer.data import train_transforms

        items = [{**item, "annotated": np.ones(NUM_CLASSES, dtype=bool)} for item in items]
        transform = train_transforms([args.roi] * 3, args.patches, foreground_ratio=0.5)
    else:
        chain = [LoadImaged(keys=["image", "label"], image_only=True), EnsureChannelFirstd(keys=["image", "label"])]
        if args.one_hot:
            chain.append(AsDiscreted(keys="label", to_onehot=args.one_hot))
        transform = Compose(chain)
    loader = DataLoader(Dataset(items, transform=transform), batch_size=args.batch, shuffle=False,
                        num_workers=args.workers, prefetch_factor=args.prefetch if args.workers else None)
    checksum = 0.0
    for batch in loader:  # as in a training loop, `batch` stays bound while the loader builds the next
        checksum += float(batch["image"][..., ::8, ::8, ::8].sum()) + float(batch["label"][..., ::8, ::8, ::8].sum())
        if args.step_s:
            time.sleep(args.step_s)
    print(json.dumps({"batches": args.batches, "checksum": checksum}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
