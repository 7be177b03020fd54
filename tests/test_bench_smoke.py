"""Smoke tests of the benchmarks: ``benchmarks/bench_mlp.py --quick`` runs to the end and prints
its final line in the documented format (timings are not checked: they depend on the machine), so do
``benchmarks/bench_lenet.py --quick`` and ``bench_conv1d.py --quick`` (with one first epoch per implementation
in a fresh process), and ``benchmarks/train_cnn.py --quick`` logs its epochs and resumes
from its checkpoint."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.bench_mlp import epoch_flops  # noqa: E402
from benchmarks.common import format_table, summarize  # noqa: E402
from benchmarks import bench_lenet, train_cnn  # noqa: E402

FINAL_LINE = re.compile(r"jaxnets_vs_flax=(\S+) jaxnets_vs_torch=(\S+) fraction_of_matmul_peak=(\S+)")


def test_epoch_flops_by_hand():
    # 784·256 + 256·256 + 256·10 = 268,800 MACs; 6·268,800 − 2·200,704 = 1,211,392 FLOPs per example.
    assert epoch_flops(steps=1, batch=1) == 1_211_392
    assert epoch_flops(steps=468, batch=128) == 468 * 128 * 1_211_392
    # one layer: forward + weight gradient only (no input gradient for the data)
    assert epoch_flops(steps=1, batch=1, sizes=(3, 2)) == 4 * 6


def test_summaries_and_table():
    assert summarize([3.0, 1.0, 2.0]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    table = format_table([{"a": 1.23456, "b": None}], ["a", "b"]).splitlines()
    assert table[0].split() == ["|", "a", "|", "b", "|"] and "1.235" in table[2] and "-" in table[2]


def run_quick(script: str, timeout: int = 600, *args: str) -> tuple[str, str]:
    """``python benchmarks/SCRIPT --quick *args`` in a fresh process; it must succeed. Returns (stdout, its last
    line)."""
    run = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *args],
                         capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert run.returncode == 0, run.stderr[-3000:]
    return run.stdout, run.stdout.strip().splitlines()[-1]


def test_quick_benchmark_prints_final_line():
    _, last = run_quick("bench_mlp.py")
    match = FINAL_LINE.fullmatch(last)
    assert match, last
    for value in match.groups():
        float(value)  # a number, or nan where a framework is not installed


@pytest.mark.requires_fashion_mnist
def test_quick_cnn_training_logs_each_epoch_and_resumes(tmp_path):
    argv = ["lenet", "--quick", "--augment", "--shift", "1", "--out", str(tmp_path / "log.jsonl"),
            "--checkpoint-dir", str(tmp_path / "run")]
    history = train_cnn.main(argv)["history"]
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert logged == history and [r["epoch"] for r in logged] == [1]
    assert 0.1 < logged[0]["test_accuracy"] <= 1.0 and logged[0]["minutes"] > 0
    assert train_cnn.main(argv)["history"] == []  # the checkpoint holds the finished epoch: nothing reruns


@pytest.mark.requires_fashion_mnist
def test_quick_lenet_benchmark_prints_final_line_and_conv_forms_train_alike(capsys):
    result = bench_lenet.main(["--quick", "--impls", "jaxnets-scan,jaxnets-im2col-scan,jaxnets-user"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"jaxnets_vs_torch=(\S+) jaxnets_vs_flax=(\S+) user_vs_models_lenet=(\S+)", last), last
    auto, im2col, user = result["rows"]
    assert [r["implementation"] for r in result["rows"]] == ["jaxnets-scan", "jaxnets-im2col-scan", "jaxnets-user"]
    # Same params, keys and batches; only the convolution's arithmetic differs (float rounding).
    assert auto["train_loss"] == pytest.approx(im2col["train_loss"], rel=1e-4)
    assert auto["train_accuracy"] == pytest.approx(im2col["train_accuracy"], abs=2 / result["examples"])
    # the hand-written LeNet is the models' LeNet: the same layers (init differs: He vs Glorot)
    assert 0 < user["train_loss"] < 3


def test_quick_user_cnn_benchmark_times_first_epochs_in_fresh_processes_and_on_a_filled_cache():
    out, last = run_quick("bench_conv1d.py", 600, "--first-epoch-runs", "1")
    assert re.fullmatch(r"jaxnets_vs_torch=\S+ jaxnets_vs_flax=\S+", last), last
    rows = {line.split("|")[1].strip(): [cell.strip() for cell in line.split("|")[2:-1]]
            for line in out.splitlines() if line.startswith("| ") and not line.startswith("| implementation")}
    assert {"jaxnets", "jaxnets+cache"} <= set(rows), out
    for name in ("jaxnets", "jaxnets+cache"):
        assert float(rows[name][1]) > 0  # first_cold_min_s: measured in a fresh process
    assert rows["jaxnets+cache"][0] == "-" and rows["jaxnets+cache"][3] == "-"  # no in-process or steady epochs


def test_quick_conv_impls_benchmark_prints_both_tables_and_final_line():
    out, last = run_quick("bench_conv_impls.py")
    assert "| shape " in out and "| network " in out and "user 1-D CNN" in out
    assert re.fullmatch(r"auto_within_10_percent=\d+/2 networks_auto_within_10_percent=\d/1", last), last


def test_quick_mixed_precision_benchmark_prints_final_line():
    _, last = run_quick("bench_mixed_precision.py")
    match = re.fullmatch(r"bf16_accuracy_delta=([+-]\d\.\d{4}) bf16_speedup=(\d+\.\d\d)", last)
    assert match, last
    assert abs(float(match.group(1))) <= 0.05  # 2 epochs on the digits: bfloat16 trains like float32


def test_quick_scaling_benchmark_trains_every_layout_to_the_one_device_params():
    out, last = run_quick("bench_scaling.py", timeout=900)
    match = re.fullmatch(r"data_parallel_equal=(\S+) multiprocess_equal=(\S+) streamed_vs_in_memory=(\S+)", last)
    assert match, last
    assert float(match.group(1)) < 1e-4 and float(match.group(2)) < 1e-4  # float rounding, not another training
    assert 0 < float(match.group(3)) < 10  # a measured ratio of two speeds
    assert "2 processes × 2" in out and "4 devices" in out
    streamed = re.search(r"in memory \(ratio \S+\); max \|Δparam\| (\S+)", out)
    assert streamed and float(streamed.group(1)) < 1e-5, out  # the memmap trains as the arrays in memory do
    assert "with a peak resident memory of" in out


@pytest.mark.requires_fashion_mnist
def test_quick_epoch_profile_names_the_operations_of_the_compiled_epoch():
    out, last = run_quick("profile_epoch.py")
    match = re.fullmatch(r"epoch_ms=([\d.]+) operations_ms=([\d.]+) top=(\S+) top_share=([\d.]+)", last)
    assert match, last
    assert float(match.group(2)) > 0 and 0 < float(match.group(4)) <= 1
    rows = [line for line in out.splitlines() if line.startswith("| ") and "| epoch: " in line]
    assert rows, out  # operations traced in the epoch are found again in its compiled program
    assert any("dot_general" in row for row in rows), out  # the matmuls are among the top ten
