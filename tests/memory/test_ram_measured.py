"""The RAM model against a real DataLoader pipeline measured by `cellcheck profile` (one small config).

The full table (workers 0/2/4, two crop sizes, 15 % target) is tests/benchmarks/check_ram_model.py.
"""

from loader_memory import LoaderConfig, compare, measure_bases


def test_predicted_host_memory_of_a_two_worker_loader_is_close_to_measured(tmp_path):
    cache, work = tmp_path / "data", tmp_path / "profiles"
    cache.mkdir()
    work.mkdir()
    bases = measure_bases(cache, work)
    assert 100 * 2**20 < bases.rank < 2 * 2**30 and 0 <= bases.worker < bases.rank  # torch + MONAI imported
    row = compare(LoaderConfig(size=128, workers=2), bases, cache, work)
    assert row["crop_shape"] == [128, 128, 128]
    # generous: the script holds the 15 % target on six configs; this keeps one in every test run
    assert 0.75 <= row["ratio"] <= 1.3, row
    # batches waiting in the queue are shared memory no process maps yet: PSS alone misses them
    assert row["peak"]["unmapped_shm_bytes"] > 0
    assert row["measured_pss_bytes"] < row["measured_bytes"]
