"""What a run shows: the epoch line, a bar on a terminal only, progress.png from the records, the run folder rule."""

import io
import json

import matplotlib.image as mpimg
import pytest

from trainer.curves import epoch_records, plot_progress
from trainer.progress import Console, epoch_line, human_bytes
from cellcheck.run_folder import held_run, rerun_refusal

RECORD = {"epoch": 5, "train_loss": 0.81234, "steps": 250, "nonfinite_skipped": 2, "seconds": 41.25,
          "val_seconds": 3.04, "learning_rate": 2e-4, "host_peak_bytes": 3.3 * 2**30,
          "max_memory_reserved": 10.24 * 2**30,
          "val_dice": {"ecs": 0.9, "pm": 0.7, "er_lum": 0.01, "ves_lum": 0.05, "golgi_lum": 0.11},
          "val_dice_mean": 0.3534}


def test_epoch_line_names_loss_skips_validation_worst_classes_time_and_memory():
    assert epoch_line(RECORD, 100) == ("epoch 5/100  loss 0.8123  skipped 2  val Dice 0.353 (worst er_lum 0.01, "
                                       "ves_lum 0.05, golgi_lum 0.11)  41.2 s + 3.0 s validation  host 3.3 GiB  "
                                       "GPU 10.2 GiB")
    unvalidated = {k: v for k, v in RECORD.items() if not k.startswith("val") and k != "max_memory_reserved"}
    assert epoch_line(unvalidated, 100) == "epoch 5/100  loss 0.8123  skipped 2  val -  41.2 s  host 3.3 GiB"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("stream, bar", [(Terminal(), True), (io.StringIO(), False)])
def test_bar_over_steps_on_a_terminal_only(stream, bar):
    """A SLURM log (a file) gets the lines and no bar; a terminal gets a bar that is erased at the epoch's end."""
    console = Console(stream=stream)
    with console.steps("epoch 1/2", total=3) as advance:
        for _ in range(3):
            advance()
    console.line("epoch 1/2  loss 1.0000")
    text = stream.getvalue()
    assert text.endswith("epoch 1/2  loss 1.0000\n")
    assert ("\x1b[" in text) is bar  # rich's cursor and colour codes
    if not bar:
        assert text == "epoch 1/2  loss 1.0000\n"


def test_other_ranks_say_nothing():
    stream = Terminal()
    console = Console(rank=1, stream=stream)
    with console.steps("epoch 1/2", total=2) as advance:
        advance()
    console.line("anything")
    assert stream.getvalue() == ""


def test_progress_png_from_records_with_and_without_validation(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    rows = [{**RECORD, "epoch": e, "train_loss": 1.0 / e} for e in range(1, 5)]
    rows[1] = {k: v for k, v in rows[1].items() if not k.startswith("val")}  # an epoch without validation
    text = "".join(json.dumps(r) + "\n" for r in rows)
    metrics.write_text(text + '{"event": "signal", "epoch": 5}\n{"epoch": 5, "train_lo')  # an event, a cut line
    records = epoch_records(metrics)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4]
    path = plot_progress(records, tmp_path / "progress.png")
    assert mpimg.imread(path).shape[:2] == (900, 900)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_a_run_folder_is_a_folder_where_training_started(tmp_path):
    assert held_run(tmp_path) == [] and rerun_refusal(tmp_path) is None
    (tmp_path / "gate.json").write_text("{}")  # a refused start left its report: not a run
    assert rerun_refusal(tmp_path) is None
    (tmp_path / "memory.jsonl").write_text("")
    message = rerun_refusal(tmp_path)
    assert message == (f"{tmp_path} already holds a run (memory.jsonl); continue it with --resume, or give the new "
                       "run a new output_dir (--set output_dir=...)")


def test_sizes_read_as_a_listing_does():
    assert [human_bytes(n) for n in (512, 4_900_000, 1_046_193_669)] == ["512 B", "4.9 MB", "1.0 GB"]
