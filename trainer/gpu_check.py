"""`python -m trainer.gpu_check [--out gpu_check.json]`: the trainer on one GPU, beside what cellcheck predicts.

Meant to finish in under 8 minutes on one GPU (`--budget-s` stops early and says what it skipped):

1. each network at its L40S template configuration (slurm/configs/<model>-l40s.yaml: ROI, batch,
   AMP) and at the largest batch the VRAM model (`cellcheck predict`'s) says fits this card: a
   warm-up step (optimizer state, as the model assumes from step 2 on), then one measured AMP
   training step - forward, the trainer's loss, backward, optimizer step - with
   `torch.cuda.max_memory_allocated` / `max_memory_reserved` and NVML's used memory next to the
   predicted tensor peak and card bill. The optimizer is the one the VRAM model tracks (the
   template's: AdamW, SGD for DiNTS).
2. the loss's forward + backward at B=2, C=14, 96^3 with fp32 and bf16 logits, eager and compiled
   (torch.compile): median ms and peak extra memory over the logits.

Writes one JSON and prints a table. Without a CUDA GPU it says so, writes a JSON that says so and
exits 0 (CI runs it that way).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from cellcheck.classes import DEFAULT_CLASS_MAP
from cellcheck.config import validate_config
from cellcheck.errors import run_cli
from cellcheck.memory import vram
from cellcheck.memory.gpus import GpuProfile
from cellcheck.files import write_atomic
from cellcheck.submit import shipped
from cellcheck.models.losses import DeepSupervisionPartialLoss, PartialAnnotationLoss
from cellcheck.models.networks import build_network
from trainer.train import train_step

#: The loss timing's shape: B=2 patches of 96^3, the default map's classes.
LOSS_SIZE, LOSS_BATCH, LOSS_CLASSES = 96, 2, len(DEFAULT_CLASS_MAP)


def templates() -> list[dict[str, Any]]:
    """(model, roi, batch, amp, classes) of every shipped `*-l40s.yaml` config, as the trainer would read it."""
    out = []
    folder = shipped("configs")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith("-l40s.yaml"):
            continue
        cfg = validate_config(yaml.safe_load(entry.read_text()), entry.name).config
        out.append({"model": cfg.model, "roi": list(cfg.roi_size), "batch": cfg.batch_size,
                    "amp": "bf16" if cfg.amp else None, "config": entry.name, "num_classes": cfg.num_classes,
                    "width": cfg.network_width})
    return out


def this_card(device: torch.device) -> GpuProfile:
    """The card as a VRAM-model profile: its name and the total memory CUDA reports."""
    props = torch.cuda.get_device_properties(device)
    return GpuProfile(props.name, int(props.total_memory), "measured by torch.cuda")


def model_prediction(model: str, roi: list[int], batch: int, amp: str | None, card: GpuProfile, num_classes: int,
                     width: float = 1.0, known: vram.VramEstimate | None = None) -> dict[str, Any]:
    """The VRAM model's numbers for one step on `card` (one GPU, no DDP buckets); `known` if already run."""
    est = known or vram.estimate(vram.track_step(model, roi, batch, amp, out_channels=num_classes, width=width),
                                 card, gpus=1)
    return {"tensors_peak_bytes": est.step.peak_bytes, "segment_peak_bytes": est.step.segment_peak_bytes,
            "card_bytes": est.peak_bytes, "fits": est.fits, "optimizer": est.step.optimizer}


def measure_step(model: str, roi: list[int], batch: int, amp: str | None, device: torch.device,
                 optimizer: str, num_classes: int, width: float = 1.0) -> dict[str, Any]:
    """One warm-up and one measured training step of the trainer's network and loss; memory in bytes.

    On a CPU (tests) the memory fields are None. A CUDA out-of-memory is recorded, not raised.
    """
    cuda = device.type == "cuda"
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
    _release(device)
    try:
        net = build_network(model, num_classes, roi_size=roi, deep_supervision=True, width=width).to(device)
        opt = vram.build_optimizer(optimizer, net.parameters())
        loss_fn = DeepSupervisionPartialLoss(PartialAnnotationLoss(num_classes)).to(device)
        scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        gen = torch.Generator().manual_seed(0)
        patches = {"image": torch.rand(batch, 1, *roi, generator=gen),
                   "label": torch.randint(0, num_classes + 1, (batch, 1, *roi), generator=gen, dtype=torch.uint8),
                   "annotated": torch.ones(batch, num_classes, dtype=torch.bool)}
        train_step(net, loss_fn, opt, scaler, patches, device, amp_dtype, False)  # optimizer state, autotuning
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        loss, _ = train_step(net, loss_fn, opt, scaler, patches, device, amp_dtype, False)
        if cuda:
            torch.cuda.synchronize(device)
        out: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 3), "loss_finite": loss is not None,
                               "oom": False}
        if cuda:
            out["max_memory_allocated"] = torch.cuda.max_memory_allocated(device)
            out["max_memory_reserved"] = torch.cuda.max_memory_reserved(device)
            out["nvml_used_bytes"] = _nvml_used(device)
        del net, opt, loss_fn, patches, loss
        return out
    except torch.OutOfMemoryError as exc:
        return {"oom": True, "error": str(exc).splitlines()[0][:200]}
    finally:
        _release(device)


def loss_timing(device: torch.device, dtype: torch.dtype, impl: str, size: int = LOSS_SIZE,
                rounds: int = 20) -> dict[str, Any]:
    """Forward + backward of one loss implementation: median ms and peak extra memory over the logits."""
    gen = torch.Generator().manual_seed(0)
    shape = (LOSS_BATCH, LOSS_CLASSES, size, size, size)
    logits = torch.randn(shape, generator=gen).to(device=device, dtype=dtype).requires_grad_(True)
    labels = torch.randint(0, LOSS_CLASSES + 1, (LOSS_BATCH, 1, size, size, size), generator=gen,
                           dtype=torch.uint8).to(device)
    mask = torch.ones(LOSS_BATCH, LOSS_CLASSES, dtype=torch.bool, device=device)
    fn = _loss_impl(impl, LOSS_CLASSES)
    t_compile = time.perf_counter()
    for _ in range(3):  # warm-up; the first call compiles
        logits.grad = None
        fn(logits, labels, mask).backward()
    _sync(device)
    warmup_s = time.perf_counter() - t_compile
    times = []
    for _ in range(rounds):
        logits.grad = None
        _sync(device)
        t0 = time.perf_counter()
        fn(logits, labels, mask).backward()
        _sync(device)
        times.append(time.perf_counter() - t0)
    out = {"impl": impl, "dtype": str(dtype).removeprefix("torch."), "size": size, "median_ms":
           round(1e3 * statistics.median(times), 3), "warmup_s": round(warmup_s, 2),
           "logits_bytes": logits.numel() * logits.element_size()}
    if device.type == "cuda":
        logits.grad = None
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn(logits, labels, mask).backward()
        torch.cuda.synchronize(device)
        out["peak_extra_bytes"] = torch.cuda.max_memory_allocated(device) - base
        out["peak_extra_over_logits"] = round(out["peak_extra_bytes"] / out["logits_bytes"], 3)
    return out


def _loss_impl(impl: str, num_classes: int) -> Callable[..., torch.Tensor]:
    if impl == "eager":
        return PartialAnnotationLoss(num_classes)
    if impl == "compiled":
        return torch.compile(PartialAnnotationLoss(num_classes), fullgraph=True)
    raise ValueError(f"unknown loss implementation {impl!r}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _nvml_used(device: torch.device) -> int | None:
    """NVML's used memory of this card: the CUDA context and everything the caching allocator holds."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no NVML here: the JSON says None
        return None
    try:
        props = torch.cuda.get_device_properties(device)
        try:  # NVML counts physical cards, torch the visible ones: find ours by its PCI address
            address = f"{props.pci_domain_id:08x}:{props.pci_bus_id:02x}:{props.pci_device_id:02x}.0"
            handle = pynvml.nvmlDeviceGetHandleByPciBusId(address)
        except Exception:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device.index or 0)
        return int(pynvml.nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:
        return None
    finally:
        pynvml.nvmlShutdown()


def run(device: torch.device, budget_s: float, models: list[str] | None = None,
        say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Every measurement that fits the time budget (see the module docstring); `say` gets a line per result."""
    start = time.perf_counter()
    card = this_card(device)
    report: dict[str, Any] = {"gpu": {**card.to_json(), "torch": torch.__version__, "cuda": torch.version.cuda},
                              "steps": [], "loss": [], "skipped": []}

    def over(what: str) -> bool:
        if time.perf_counter() - start > budget_s:
            report["skipped"].append(what)
            return True
        return False

    for dtype in (torch.float32, torch.bfloat16):
        for impl in ("eager", "compiled"):
            if over(f"loss {impl} {dtype}"):
                continue
            report["loss"].append(loss_timing(device, dtype, impl))
            say(f"loss {impl} {dtype}: {report['loss'][-1]['median_ms']} ms")
            _release(device)
    for tpl in templates():
        if models and tpl["model"] not in models:
            continue
        model, roi, amp = tpl["model"], tpl["roi"], tpl["amp"]
        if over(f"{model}: template step"):
            continue
        classes, width = tpl["num_classes"], tpl["width"]
        search = vram.max_batch_size(model, roi, card, gpus=1, amp=amp, out_channels=classes, width=width)
        for label, batch in (("L40S template", tpl["batch"]), ("largest predicted", search.max_batch_size)):
            if batch < 1 or over(f"{model}: {label} batch {batch}"):
                continue
            pred = model_prediction(model, roi, batch, amp, card, classes, width, search.at(batch))
            measured = measure_step(model, roi, batch, amp, device, pred["optimizer"], classes, width)
            report["steps"].append({"model": model, "which": label, "config": tpl["config"], "roi": roi,
                                    "batch": batch, "amp": amp, "predicted": pred, "measured": measured})
            say(_step_line(report["steps"][-1]))
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def _gib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**30:.2f}"


def _step_line(step: dict[str, Any]) -> str:
    p, m = step["predicted"], step["measured"]
    roi = "x".join(map(str, step["roi"]))
    if m.get("oom"):
        got = f"OOM: {m['error']}"
    else:
        ratio = m["max_memory_allocated"] / p["tensors_peak_bytes"] if p["tensors_peak_bytes"] else float("nan")
        got = (f"{_gib(m['max_memory_allocated']):>9} {ratio:>6.2f} {_gib(m['max_memory_reserved']):>9} "
               f"{_gib(m.get('nvml_used_bytes')):>9} {m['seconds']:>7.2f}")
    return (f"{step['model']:<10} {step['which']:<18} {roi:<12} {step['batch']:>5} {_gib(p['tensors_peak_bytes']):>9} "
            f"{_gib(p['card_bytes']):>9} {got}")


def render(report: dict[str, Any]) -> str:
    """The printed table: steps (GiB, predicted vs measured) then the loss timings."""
    gpu = report["gpu"]
    lines = [f"gpu_check: {gpu['name']} ({_gib(gpu['total_bytes'])} GiB), torch {gpu['torch']}, CUDA {gpu['cuda']}",
             "", f"{'model':<10} {'batch from':<18} {'roi':<12} {'batch':>5} {'pred.tens':>9} {'pred.card':>9} "
             f"{'allocated':>9} {'x pred':>6} {'reserved':>9} {'nvml used':>9} {'s/step':>7}"]
    lines += [_step_line(s) for s in report["steps"]]
    lines += ["", f"{'loss B=2 C=14':<16} {'dtype':<9} {'median ms':>10} {'extra x logits':>15} {'warm-up s':>10}"]
    for row in report["loss"]:
        extra = row.get("peak_extra_over_logits")
        lines.append(f"{row['impl'] + ' ' + str(row['size']) + '^3':<16} {row['dtype']:<9} {row['median_ms']:>10.2f} "
                     f"{'-' if extra is None else f'{extra:.2f}':>15} {row['warmup_s']:>10.1f}")
    if report.get("skipped"):
        lines += ["", "skipped (time budget): " + "; ".join(report["skipped"])]
    lines.append(f"total {report.get('seconds', 0)} s")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="JSON report (written atomically)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="stop starting new measurements after this")
    parser.add_argument("--models", help="comma-separated subset of segresnet,swinunetr,dints")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        reason = f"no CUDA GPU visible (torch {torch.__version__}, CUDA build {torch.version.cuda}); nothing measured"
        print(f"gpu_check: {reason}")
        write_atomic(args.out, json.dumps({"gpu": None, "skipped": reason}, indent=2) + "\n")
        return 0
    device = torch.device("cuda", torch.cuda.current_device())
    models = args.models.split(",") if args.models else None
    report = run(device, args.budget_s, models, say=lambda line: print(line, flush=True))
    write_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(render(report), end="")
    print(f"gpu_check: wrote {args.out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
