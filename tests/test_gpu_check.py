"""benchmarks/gpu_check.py, the prepared GPU check, as a CPU dry run: every part runs and lands
in its one JSON, which the book's throughput table reads (`reproducibility.saved_rows`)."""

import importlib.util
import json
from pathlib import Path

from s23dr.analysis import reproducibility

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks/gpu_check.py"


def load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cpu_dry_run_records_every_part_and_the_book_reads_it(tmp_path, capsys):
    gpu_check = load_script()
    before = gpu_check.RESULT.read_bytes() if gpu_check.RESULT.is_file() else None
    out = tmp_path / reproducibility.GPU_CHECK
    assert gpu_check.main(["--device", "cpu", "--steps", "3", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["cuda_tests"]["returncode"] == 0 and "skipped" in record["cuda_tests"]["summary"]
    rows = record["bench_eager"]
    assert [r["stage"] for r in rows] == ["stage1", "stage2"]
    for row in rows:
        assert row["samples_per_s"] > 0 and row["trainer_samples_per_s"] > 0
        assert all(row[k] > 0 for k in ("forward_s", "backward_s", "optimizer_s")) and row["data_s"] >= 0
    run = record["trainer"]
    assert run["checkpoint_step"] == 3 and run["evaluation"]["step"] == 3 and "hss" in run["evaluation"]
    assert record["command"][1:] == ["--device", "cpu", "--steps", "3", "--out", str(out)]
    assert "trainer: stage1 3 steps" in capsys.readouterr().out
    assert (gpu_check.RESULT.read_bytes() if gpu_check.RESULT.is_file() else None) == before  # a dry run writes no result

    table = reproducibility.saved_rows(tmp_path)
    assert [r["stage"] for r in table] == ["stage1", "stage2"]
    assert all(r["source"].endswith(reproducibility.GPU_CHECK) and r["step ms: data, forward, backward, AdamW"]
               for r in table)


def test_without_the_gpu_checks_file_the_table_says_it_has_not_run(tmp_path):
    (rows,) = reproducibility.saved_rows(tmp_path)
    assert "gpu_check.py has not run" in rows["samples/s"]


def test_bad_steps_are_refused_in_one_line(capsys):
    gpu_check = load_script()
    assert gpu_check.main(["--device", "cpu", "--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps should be an integer >= 1, got 0"
