"""The learning benchmark: does masking unannotated classes let a network learn from partially annotated crops?

    python tests/benchmarks/learning.py [--out DIR] [--seeds 0 1 2] [--steps 400] [--jobs 2] [--json FILE]
    python tests/benchmarks/learning.py --quick [--json FILE]      # CI: the direction only (scripts/test.sh)

Data (fixtures/full.py): 18 fully annotated 40^3 crops at 8 nm, 4 of them held out (fold 0). A copy
hides classes the way the field's data does: each training crop keeps 5 of the 14 classes (balanced:
every class is kept in 5 of the 14 crops), the other 9 leave its `annotated_classes` and their voxels
read 0 in its label, while the image still shows them. Four arms train the same small network
(SegResNetDS, 8 initial filters, 1.2 M parameters) with the trainer's own data path, loss and step
(`trainer.run_data.open_data`, `trainer.train.build_loss` / `train_step` / `validate`):

* masked   - the hidden copy, `loss: partial` (the trainer's masked sigmoid Dice + BCE);
* unmasked - the hidden copy, `loss: dice_bce` (every channel supervised: hidden voxels count as background);
* full     - the fully annotated crops, `loss: partial` (nothing is masked: the ceiling);
* store    - the same crops as one CellMap store (fixtures/stores.py), each training crop listing only
             the classes the hidden copy keeps (the others unknown there), trained straight from the
             store (no NIfTI) with a datasplit holding out the same 4 crops, `loss: partial`.

Each arm is scored by per-class Dice (sigmoid > 0.5) on the 4 held-out, fully annotated crops, after
`QUICK_STEPS` and after `--steps` steps. The gate refuses the unmasked arm (`loss-unmasked`, which
is what it is there for); the benchmark runs the gate on each arm's config, records the verdicts,
and then deliberately trains below it (the library, not `cellcheck train`), so the way around the
gate is this file and nothing a user's config can reach.

`--quick` trains the masked and unmasked arms for QUICK_STEPS on seed 0 and exits 1 unless the masked
mean Dice beats the unmasked one by QUICK_MARGIN (docs/BENCHMARKS.md: how the margin was chosen from
the repeated full runs, whose QUICK_STEPS checkpoint is exactly a quick run of that seed).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

from cellcheck.classes import CLASS_NAMES, NUM_CLASSES  # noqa: E402

ARMS = {"masked": ("hidden", "partial"), "unmasked": ("hidden", "dice_bce"), "full": ("full", "partial"),
        "store": ("stores", "partial")}
N_TRAIN, N_VAL, KEEP = 14, 4, 5
STEPS, QUICK_STEPS = 400, 150
#: --quick passes when masked mean Dice - unmasked mean Dice >= this (see docs/BENCHMARKS.md).
QUICK_MARGIN = 0.02
#: The training config of every arm (the gate sees it; the network is the small one below).
CONFIG = {"model": "segresnet", "roi_size": [32, 32, 32], "batch_size": 2, "num_patches_per_image": 2,
          "num_epochs": 100, "num_workers": 0, "learning_rate": 3e-3, "mem": "64G", "gpu": "l40s",
          "foreground_ratio": 0.7}


# --- data ----------------------------------------------------------------------------------------


def make_data(root: Path, seed: int = 0) -> dict[str, Path]:
    """The fully annotated crops, their hidden copy and the store under `root`: {"full", "hidden": datalist,
    "stores": folder of the store, "datasplit": its split}."""
    from fixtures.full import make_full_crops

    if not (root / "full" / "datalist.json").is_file():
        shutil.rmtree(root / "full", ignore_errors=True)
        make_full_crops(root / "full", seed=seed, n=N_TRAIN + N_VAL, n_val=N_VAL)
    if not (root / "hidden" / "datalist.json").is_file():
        shutil.rmtree(root / "hidden", ignore_errors=True)
        hide_classes(root / "full", root / "hidden", KEEP, seed)
    if not (root / "stores" / "datasplit.csv").is_file():
        shutil.rmtree(root / "stores", ignore_errors=True)
        store_copy(root / "full" / "datalist.json", root / "stores", KEEP, seed)
    return {"full": root / "full" / "datalist.json", "hidden": root / "hidden" / "datalist.json",
            "stores": root / "stores", "datasplit": root / "stores" / "datasplit.csv"}


def store_copy(full: Path, dst: Path, keep: int, seed: int) -> None:
    """The full crops as one CellMap store: a training crop lists the classes the hidden copy keeps, a held-out
    crop all 14; and a datasplit (csc make-datasplit's format) holding out the same crops as fold 0."""
    from fixtures.stores import CropArrays, write_store

    datalist = json.loads(full.read_text())
    training = [e for e in datalist["training"] if e["fold"] != 0]
    kept = dict(zip((e["image"] for e in training), kept_classes(present_channels(full.parent, training), keep, seed)))
    crops, rows = [], []
    store = dst / "jrc_learning.zarr"
    for e in datalist["training"]:
        name = Path(e["image"]).name.split(".")[0]
        image = np.asarray(nib.load(str(full.parent / e["image"])).dataobj)
        label = np.asarray(nib.load(str(full.parent / e["label"])).dataobj)
        listed = [CLASS_NAMES[c] for c in kept[e["image"]]] if e["image"] in kept else list(CLASS_NAMES)
        crops.append(CropArrays(name, image, label, listed))
        usage = "validate" if e["fold"] == 0 else "train"
        rows.append(f'"{usage}","{store}","recon-1/em/fibsem-uint8","{store}",'
                    f'"recon-1/labels/groundtruth/{name}/[{",".join(listed)}]"')
    write_store(store, crops, seed=seed)
    (dst / "datasplit.csv").write_text("\n".join(rows) + "\n")


def kept_classes(present: list[set[int]], keep: int, seed: int) -> list[list[int]]:
    """For each training crop (`present`: the channels it holds voxels of) the `keep` channels it stays annotated
    for; each channel kept equally often, and in at least one crop where it is present.

    Crop i keeps positions i*keep .. i*keep+keep-1 (mod 14) of a random order of the channels, so with
    14 crops every channel is kept in exactly `keep` of them. An order that would leave a channel annotated
    only where it is absent (nothing to learn; the gate's class-empty) is drawn again, as annotators
    annotate what a crop shows.
    """
    for attempt in range(1000):
        order = np.random.default_rng([seed, 31, attempt] if attempt else [seed, 31]).permutation(NUM_CLASSES)
        kept = [sorted(int(order[(i * keep + j) % NUM_CLASSES]) for j in range(keep)) for i in range(len(present))]
        if all(any(c in p for k, p in zip(kept, present) if c in k) for c in range(NUM_CLASSES)):
            return kept
    raise ValueError("no order of the channels keeps each where it is present; the crops lack some class")


def present_channels(root: Path, entries: list[dict]) -> list[set[int]]:
    """The channels each entry's label holds voxels of."""
    return [{int(v) - 1 for v in np.unique(np.asarray(nib.load(str(root / e["label"])).dataobj)) if v}
            for e in entries]


def hide_classes(src: Path, dst: Path, keep: int, seed: int) -> dict[str, list[int]]:
    """Copy the dataset `src` to `dst`, where each training crop (fold != 0) annotates only `keep` classes.

    A hidden class leaves the crop's `annotated_classes` and its voxels become 0 in the label (what a
    converter writes for a class nobody annotated); images are untouched, validation crops too.
    Returns {case: kept channels}.
    """
    shutil.copytree(src, dst)
    datalist = json.loads((dst / "datalist.json").read_text())
    training = [e for e in datalist["training"] if e["fold"] != 0]
    kept = {}
    for entry, channels in zip(training, kept_classes(present_channels(dst, training), keep, seed)):
        path = dst / entry["label"]
        img = nib.load(str(path))
        label = np.asarray(img.dataobj)
        label = np.where(np.isin(label, [c + 1 for c in channels]), label, 0).astype(np.uint8)
        nib.save(nib.Nifti1Image(label, img.affine), str(path))
        entry["annotated_classes"] = ",".join(str(c) for c in channels)
        kept[Path(entry["label"]).name.split(".")[0]] = channels
    (dst / "datalist.json").write_text(json.dumps(datalist, indent=2) + "\n")
    return kept


# --- one arm -------------------------------------------------------------------------------------


def small_network():
    """The network every arm trains: SegResNetDS as the trainer builds it, at 8 filters and 4 levels (1.2 M)."""
    from monai.networks.nets import SegResNetDS

    return SegResNetDS(spatial_dims=3, init_filters=8, in_channels=1, out_channels=NUM_CLASSES,
                       blocks_down=(1, 2, 2, 4), norm="instance", dsdepth=3)


def arm_config(arm: str, datalists: dict[str, Path], seed: int, folder: Path) -> Path:
    """Write the arm's training config (what `cellcheck train` would be given) and return its path."""
    import yaml

    data, loss = ARMS[arm]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{arm}.yaml"
    source = {"datalist": str(datalists[data])}
    if data == "stores":
        source.update(resolution=8, datasplit=str(datalists["datasplit"]))
    path.write_text(yaml.safe_dump({**CONFIG, **source, "output_dir": str(folder / arm), "loss": loss, "seed": seed}))
    return path


def gate_verdict(config: Path) -> dict[str, Any]:
    """The gate's verdict on an arm's config: passed, and the ids of the findings that fail it."""
    from cellcheck.gate import run_gate

    report = run_gate(config=config, env={})
    failing = sorted({f.check for f in report.findings if f.severity.value in ("error", "warning")})
    return {"passed": report.passed, "failing": failing}


def train_arm(config: Path, steps: int, score_at: list[int], threads: int = 1) -> dict[str, Any]:
    """Train the small network on an arm's config below the gate; per-class Dice at each step of `score_at`."""
    import torch

    from cellcheck.config import load_config
    from trainer.run_data import open_data
    from trainer.train import build_loss, train_step, validate

    torch.set_num_threads(threads)
    cfg = load_config(config).config
    data = open_data(cfg)  # the datalist's crops, or the store's: the trainer's own data path either way
    torch.manual_seed(cfg.seed)
    net = small_network()
    loss_fn = build_loss(cfg, data.annotated)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    cpu = torch.device("cpu")
    scores, losses, step, epoch, t0 = {}, [], 0, 0, time.time()
    while step < steps:
        for patches in data.loader(epoch):  # one crop, 2 patches: one step
            loss, _ = train_step(net, loss_fn, optimizer, scaler, patches, cpu, None, False, data.rule)
            losses.append(float(loss) if loss is not None else float("nan"))
            step += 1
            if step in score_at:
                result = validate(net, data.validation, cfg.roi_size, cfg.classes.names, data.rule, cpu)
                scores[str(step)] = {"val_dice": result["val_dice"], "val_dice_mean": result["val_dice_mean"],
                                     "train_loss": float(np.nanmean(losses[-50:])), "seconds": round(time.time() - t0)}
            if step >= steps:
                break
        epoch += 1
    return scores


def _run_one(job: dict[str, Any]) -> dict[str, Any]:
    scores = train_arm(Path(job["config"]), job["steps"], job["score_at"], job["threads"])
    return {"arm": job["arm"], "seed": job["seed"], "scores": scores}


# --- all arms ------------------------------------------------------------------------------------


def run(out: Path, arms: list[str], seeds: list[int], steps: int, jobs: int = 1, gate: bool = True,
        say=print) -> dict[str, Any]:
    """Every (arm, seed) for `steps` steps, scored at QUICK_STEPS and at the end; the gate's verdicts."""
    datalists = make_data(out / "data")
    configs = {(a, s): arm_config(a, datalists, s, out / f"seed{s}") for a in arms for s in seeds}
    verdicts = {}
    if gate:
        for arm in arms:
            verdicts[arm] = gate_verdict(configs[(arm, seeds[0])])
            say(f"gate on the {arm} arm: {'passed' if verdicts[arm]['passed'] else 'refused'}"
                + (f" ({', '.join(verdicts[arm]['failing'])})" if verdicts[arm]["failing"] else "")
                + ("; trained below the gate on purpose" if not verdicts[arm]["passed"] else ""))
    score_at = sorted({min(QUICK_STEPS, steps), steps})
    work = [{"arm": a, "seed": s, "config": str(configs[(a, s)]), "steps": steps, "score_at": score_at,
             "threads": 1 if jobs > 1 else 2} for s in seeds for a in arms]
    t0 = time.time()
    if jobs > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(jobs) as pool:
            runs = []
            for r in pool.imap_unordered(_run_one, work):
                say(f"{r['arm']} seed {r['seed']}: mean Dice {r['scores'][str(steps)]['val_dice_mean']:.3f} "
                    f"({time.time() - t0:.0f} s)")
                runs.append(r)
    else:
        runs = []
        for job in work:
            runs.append(_run_one(job))
            say(f"{job['arm']} seed {job['seed']}: mean Dice {runs[-1]['scores'][str(steps)]['val_dice_mean']:.3f} "
                f"({time.time() - t0:.0f} s)")
    return {"steps": steps, "quick_steps": QUICK_STEPS, "seeds": seeds, "arms": arms, "keep": KEEP,
            "n_train": N_TRAIN, "n_val": N_VAL, "gate": verdicts, "seconds": round(time.time() - t0),
            "runs": sorted(runs, key=lambda r: (r["seed"], r["arm"]))}


def summary(result: dict[str, Any], at: int) -> dict[str, dict[str, Any]]:
    """{arm: {"mean": [per seed], "classes": {class: [per seed]}}} of the scores after `at` steps."""
    out: dict[str, dict[str, Any]] = {}
    for r in result["runs"]:
        s = r["scores"][str(at)]
        arm = out.setdefault(r["arm"], {"mean": [], "classes": {c: [] for c in CLASS_NAMES}})
        arm["mean"].append(s["val_dice_mean"])
        for c in CLASS_NAMES:
            arm["classes"][c].append(s["val_dice"].get(c, 0.0))
    return out


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(result: dict[str, Any], at: int) -> str:
    """A markdown table: per-class validation Dice of each arm after `at` steps (mean ± sd over seeds)."""
    s = summary(result, at)
    arms = [a for a in ARMS if a in s]
    lines = ["| class | " + " | ".join(arms) + " |", "|---|" + "---:|" * len(arms)]
    for c in CLASS_NAMES:
        lines.append(f"| {c} | " + " | ".join(_cell(s[a]["classes"][c]) for a in arms) + " |")
    lines.append("| **mean** | " + " | ".join(f"**{_cell(s[a]['mean'])}**" for a in arms) + " |")
    return "\n".join(lines)


def quick_verdict(result: dict[str, Any]) -> tuple[bool, str]:
    """Whether masked beats unmasked by QUICK_MARGIN in mean Dice after QUICK_STEPS, in one line."""
    at = min(QUICK_STEPS, result["steps"])
    s = summary(result, at)
    masked, unmasked = statistics.mean(s["masked"]["mean"]), statistics.mean(s["unmasked"]["mean"])
    ok = masked - unmasked >= QUICK_MARGIN
    return ok, (f"after {at} steps: masked mean Dice {masked:.3f}, unmasked {unmasked:.3f} "
                f"(difference {masked - unmasked:+.3f}, needs >= {QUICK_MARGIN}): {'ok' if ok else 'FAILED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(".learning-benchmark"), help="working folder (data, configs)")
    parser.add_argument("--quick", action="store_true", help="CI: masked vs unmasked, seed 0, QUICK_STEPS; the direction")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--jobs", type=int, default=1, help="arms trained at once (one CPU thread each)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        result = run(args.out, ["masked", "unmasked"], [0], QUICK_STEPS, jobs=args.jobs)
    else:
        result = run(args.out, list(ARMS), args.seeds, args.steps, jobs=args.jobs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    for at in sorted({min(QUICK_STEPS, result["steps"]), result["steps"]}):
        print(f"\nvalidation Dice after {at} steps ({len(result['seeds'])} seeds):\n{table(result, at)}")
    if "unmasked" in result["arms"] and "masked" in result["arms"]:
        ok, line = quick_verdict(result)
        print(line)
        if args.quick and not ok:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
