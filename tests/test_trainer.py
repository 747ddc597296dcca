"""The trainer: LR schedule, checkpoints, exact resume, determinism, stage chaining, failures."""

import errno
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from s23dr import bench, checkpoint, inference, loop, predict, rundir
from s23dr import train as s23dr_train
from s23dr.config import load_params
from s23dr.data import data_uri, open_dataset, open_split
from s23dr.inference import first
from s23dr.train import run_stage
from s23dr.loop import EpochBatches, lr_at, train
from s23dr.rundir import MetricsLog

PARAMS = Path(__file__).resolve().parents[1] / "params"


def smoke(stage, data_root, *overrides):
    return load_params(PARAMS / f"{stage}.yaml", "smoke", [
        f"data.train={data_root}/sampled_{{points}}:train",
        f"data.val={data_root}/sampled_{{points}}:validation", *overrides])


def weights(path):
    return checkpoint.load(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --- schedule -------------------------------------------------------------------------

@pytest.mark.parametrize("stage, step, expected", [
    ("stage1", 1, 3e-4 / 10_000), ("stage1", 5_000, 1.5e-4), ("stage1", 10_000, 3e-4),
    ("stage1", 125_000, 3e-4),
    ("stage2", 125_001, 3e-5), ("stage2", 135_000, 3e-5),
    ("stage3", 135_001, 3e-5), ("stage3", 150_000, 3e-5), ("stage3", 160_000, 1.5e-5),
    ("stage3", 169_999, 3e-5 / 20_000), ("stage3", 170_000, 0.0),
])
def test_lr_at_the_seed_boundaries(stage, step, expected):
    assert lr_at(step, load_params(PARAMS / f"{stage}.yaml")["schedule"]) == pytest.approx(expected, abs=1e-15)


def test_epoch_batches_split_one_global_batch_across_ranks():
    whole = EpochBatches(40, 8, seed=1, epoch=2).batches
    halves = [EpochBatches(40, 8, seed=1, epoch=2, rank=r, world=2).batches for r in (0, 1)]
    assert [a + b for a, b in zip(*halves)] == whole
    assert EpochBatches(40, 8, seed=1, epoch=2, start=3).batches == whole[3:]
    assert EpochBatches(40, 8, seed=1, epoch=3).batches != whole


# --- checkpoints ----------------------------------------------------------------------

def test_checkpoint_save_is_atomic_and_latest_is_highest_step(tmp_path):
    for step in (5, 120, 40):
        checkpoint.save({"step": step, "model": {}, "inputs": {}}, checkpoint.path_for(tmp_path, step))
    assert checkpoint.latest(tmp_path).name == "step000120.pt"
    assert not list(tmp_path.glob(".*tmp*"))


def test_checkpoint_that_is_not_one(tmp_path):
    (tmp_path / "junk.pt").write_text("hello")
    with pytest.raises(ValueError, match="junk.pt: not a checkpoint"):
        checkpoint.load(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: not an s23dr checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    torch.save({"step": 1, "model": {}, "inputs": {"params": [1]}}, tmp_path / "odd.pt")
    with pytest.raises(ValueError, match=r"odd.pt: not an s23dr checkpoint \(its inputs hold no params"):
        checkpoint.load(tmp_path / "odd.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        checkpoint.load(tmp_path / "missing.pt")


class RunsCode:
    """An object whose unpickling would run code: it writes the file `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def test_a_checkpoint_whose_loading_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = checkpoint.save({"step": 1, "model": {}, "inputs": {"params": RunsCode(marker)}}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match=r"^\S+evil.pt: refused: the checkpoint needs \S+ to load, "
                                         r"which could run code$"):
        checkpoint.load(path)
    assert not marker.exists()


def test_checkpoint_with_other_architecture_names_the_keys(tmp_path):
    params = load_params(PARAMS / "stage1.yaml", "smoke")
    other = load_params(PARAMS / "stage1.yaml", "smoke", ["model.hidden=48", "model.latent_layers=2"])
    checkpoint.save({"step": 0, "model": {}, "inputs": {"params": other}}, tmp_path / "step000000.pt")
    with pytest.raises(ValueError, match=r"other architecture params \(hidden: checkpoint 48 vs params 32, "
                                         r"latent_layers: checkpoint 2 vs params 3\)"):
        checkpoint.load(tmp_path / "step000000.pt", params)


# --- training runs on the synthetic smoke data ----------------------------------------

def test_smoke_stage_writes_checkpoints_and_metrics(synthetic_root, tmp_path):
    params = smoke("stage1", synthetic_root)
    final = train(params, tmp_path / "run", progress=False)
    end = params["schedule"]["end_step"]
    assert final == checkpoint.path_for(tmp_path / "run", end) and final.is_file()
    rows = MetricsLog.read(tmp_path / "run" / MetricsLog.FILE)
    train_rows, evals = MetricsLog.trains(rows), MetricsLog.evals(rows)
    assert [r["step"] for r in train_rows] == list(range(1, end + 1))
    assert evals[-1]["step"] == end
    last = MetricsLog.final(rows)
    assert last["kind"] == "final" and last["step"] == end, "the final evaluation, which the verdicts read, is logged"
    for key in ("val_loss", "train_loss", "ratio", "hss", "f1", "iou"):
        assert all(key in r and r[key] == r[key] for r in evals + [last]), key
    state = checkpoint.load(final)
    assert state["inputs"]["code"] == rundir.code_version("train") and state["inputs"]["params"] == params
    assert rundir.is_current(final, checkpoint.inputs_of(params)), "an evaluated final checkpoint is stamped"


def test_the_final_evaluation_scores_final_scenes_and_the_others_max_scenes(synthetic_root, tmp_path):
    params = smoke("stage1", synthetic_root, "eval.max_scenes=2", "eval.final_scenes=5")
    rows = MetricsLog.read(train(params, tmp_path / "run", progress=False).parent / MetricsLog.FILE)
    assert {len(r["scenes"]) for r in MetricsLog.evals(rows)} == {2}
    last = MetricsLog.final(rows)
    assert len(last["scenes"]) == 5 and last["step"] == params["schedule"]["end_step"]
    assert list(last["scenes"])[:2] == list(MetricsLog.evals(rows)[-1]["scenes"]), "the curves' scenes come first"


@pytest.mark.parametrize("curve, final", [(2, 5), (4, 8)])  # the curve's scenes end inside a batch of 4, at its end
def test_the_curves_last_evaluation_read_from_the_final_one_is_the_one_it_would_make(synthetic_root, tmp_path, curve, final):
    """At the end step the curve's evaluation is the final one's first scenes, not evaluated again
    (`Validation.run`'s `first`): its row is the row a `Validation` of those scenes makes."""
    params = smoke("stage1", synthetic_root, f"eval.max_scenes={curve}", f"eval.final_scenes={final}")
    end = train(params, tmp_path / "run", progress=False)
    logged = MetricsLog.evals(MetricsLog.read(end.parent / MetricsLog.FILE))[-1]
    model, criterion, _ = loop.build(params)
    model.load_state_dict(checkpoint.load(end)["model"])
    device = torch.device("cpu")
    alone = inference.Validation(open_split(params, "val"), params, device, open_split(params, "train")).run(model, criterion)()
    assert logged["step"] == params["schedule"]["end_step"] and len(logged["scenes"]) == curve
    assert logged.keys() - {"step", "kind"} == alone.keys() and logged["scenes"] == alone["scenes"]
    assert {k: logged[k] for k in alone if k != "scenes"} == pytest.approx({k: v for k, v in alone.items() if k != "scenes"}, rel=1e-12)


def test_resume_is_bit_identical_to_an_uninterrupted_run(synthetic_root, tmp_path):
    det = ("train.deterministic=true", "train.ckpt_every=3")
    straight = train(smoke("stage1", synthetic_root, *det, "schedule.end_step=8"), tmp_path / "a", progress=False)
    train(smoke("stage1", synthetic_root, *det, "schedule.end_step=4"), tmp_path / "b", progress=False)
    (tmp_path / "b" / "step000003.pt").unlink()  # resume from the newest, step 4
    resumed = train(smoke("stage1", synthetic_root, *det, "schedule.end_step=8"), tmp_path / "b", progress=False)
    assert_same_weights(weights(straight), weights(resumed))
    a, b = checkpoint.load(straight)["optimizer"], checkpoint.load(resumed)["optimizer"]
    for key in a["state"]:
        assert torch.equal(a["state"][key]["exp_avg_sq"], b["state"][key]["exp_avg_sq"])


def test_deterministic_runs_are_bit_identical(synthetic_root, tmp_path):
    params = smoke("stage1", synthetic_root, "train.deterministic=true", "schedule.end_step=5")
    assert_same_weights(weights(train(params, tmp_path / "a", progress=False)),
                        weights(train(params, tmp_path / "b", progress=False)))


def test_scenes_in_memory_and_in_a_loader_process_train_alike(synthetic_root, tmp_path):
    """data.in_memory and data.num_workers decide how batches are made, never what they hold."""
    run = ("train.deterministic=true", "schedule.end_step=5")
    lazy = smoke("stage1", synthetic_root, *run, "data.in_memory=false", "data.num_workers=1")
    held = smoke("stage1", synthetic_root, *run, "data.in_memory=true", "data.num_workers=0")
    assert_same_weights(weights(train(lazy, tmp_path / "a", progress=False)),
                        weights(train(held, tmp_path / "b", progress=False)))


def test_resume_with_other_params_is_refused(synthetic_root, tmp_path):
    train(smoke("stage1", synthetic_root, "schedule.end_step=2"), tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match="cannot resume with other params \\(schedule.lr\\)"):
        train(smoke("stage1", synthetic_root, "schedule.end_step=4", "schedule.lr=0.01"),
              tmp_path / "r", progress=False)


def test_stages_chain_through_the_runs_directory_seed_by_seed(synthetic_root, tmp_path):
    runs = tmp_path / "runs"
    with pytest.raises(FileNotFoundError, match="run stage stage1 first"):
        run_stage(smoke("stage2", synthetic_root), runs, progress=False)
    with pytest.raises(ValueError, match="no run of training seed 7"):
        run_stage(smoke("stage1", synthetic_root), runs, progress=False, seed=7)
    s1 = run_stage(smoke("stage1", synthetic_root), runs, progress=False)
    s2 = run_stage(smoke("stage2", synthetic_root), runs, progress=False)
    seeds = [353 + i for i in range(smoke("stage2", synthetic_root)["seeds"])]
    assert [p.parent.name for p in s2] == [f"seed{s}" for s in seeds]
    for a, b in zip(s1, s2):  # each seed's stage 2 starts from that seed's stage 1
        assert checkpoint.load(b)["step"] == smoke("stage2", synthetic_root)["schedule"]["end_step"]
        assert checkpoint.load(b)["inputs"]["upstream"] == checkpoint.inputs_of(None, checkpoint.load(a))["upstream"]
    assert len({weights(p)["latents"].sum().item() for p in s1}) == len(seeds), "seeds must train apart"
    mtime = s2[0].stat().st_mtime_ns
    assert run_stage(smoke("stage2", synthetic_root), runs, progress=False, seed=seeds[0]) == [s2[0]]
    assert s2[0].stat().st_mtime_ns == mtime, "a current run must not be retrained"
    sweep = run_stage(smoke("ablation_high_lr", synthetic_root), runs, progress=False, seed=seeds[1])
    assert [p.parent.relative_to(runs / "smoke" / "ablation_high_lr") for p in sweep] == [
        Path(f"lr{lr:g}") / f"seed{seeds[1]}" for lr in smoke("ablation_high_lr", synthetic_root)["sweep_lr"]]


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_root, tmp_path, monkeypatch):
    real = loop.Criterion

    class Exploding(real):
        calls = 0

        def forward(self, outputs, batch):
            losses = super().forward(outputs, batch)
            Exploding.calls += torch.is_grad_enabled()  # training steps, not the evaluations' losses
            if Exploding.calls > 3:
                losses["total"] = losses["total"] * float("nan")
            return losses

    monkeypatch.setattr(loop, "Criterion", Exploding)
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) within steps 4\.\.4 .*step000002.pt"):
        train(smoke("stage1", synthetic_root, "train.ckpt_every=2", "train.eval_every=2"),
              tmp_path / "n", progress=False)
    assert checkpoint.latest(tmp_path / "n").name == "step000002.pt"
    assert MetricsLog(tmp_path / "n" / MetricsLog.FILE).evaluated(2), "step 2's evaluation, scored after the failure"
    assert not (tmp_path / "n" / "lock").exists(), "a failed training must release its run directory"


def test_evaluations_are_logged_in_step_order_as_they_are_scored(tmp_path):
    log = MetricsLog(tmp_path / MetricsLog.FILE)
    evaluations = loop.Evaluations(log, {"data": {"num_workers": 0}})
    scored = threading.Event()
    evaluations.submit(10, lambda: scored.wait() and {"eval": {"hss": 0.1}})
    evaluations.submit(20, lambda: {"eval": {"hss": 0.2}})
    evaluations.write()
    assert not log.path.exists()  # step 10 is being scored, and 20 waits behind it
    scored.set()
    evaluations.close()
    assert [(row["step"], row["hss"]) for row in MetricsLog.read(log.path)] == [(10, 0.1), (20, 0.2)]


#: A trainer process as the book's build starts one (spawned), scoring twice in its scoring pool.
TRAINER_SCORING = """
import multiprocessing, os
from concurrent.futures import ProcessPoolExecutor
from s23dr.inference import scoring_pool

def two_scorings():
    return [scoring_pool(1).submit(os.getpid).result() for _ in range(2)]

if __name__ == "__main__":
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as trainer:
        first, second = trainer.submit(two_scorings).result()
    print(first == second)
"""


def test_a_trainer_process_keeps_its_scoring_processes_and_still_exits(tmp_path):
    """A process's scoring pool serves its later runs (its processes' start and the metric's GT
    cache paid once), and a trainer process, itself a multiprocessing child, still exits: it
    joins its children at exit, so a kept pool not shut down before that held it for good."""
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER_SCORING)
    done = subprocess.run([sys.executable, str(script)], cwd=PARAMS.parent, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]


def test_two_process_ddp_matches_one_process(synthetic_root, tmp_path):
    """torchrun with 2 gloo processes, each half the batch, trains like one process."""
    sets = ["--set", f"data.train={synthetic_root}/sampled_{{points}}:train",
            "--set", f"data.val={synthetic_root}/sampled_{{points}}:validation",
            "--set", "model.dropout=0.0", "--set", "schedule.end_step=3", "--set", "train.eval_every=100",
            "--set", "seeds=1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
           "-m", "s23dr.train", str(PARAMS / "stage1.yaml"), "--profile", "smoke",
           "--runs", str(tmp_path / "ddp"), *sets]
    subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=300)
    single = [sys.executable, "-m", "s23dr.train", str(PARAMS / "stage1.yaml"), "--profile", "smoke",
              "--runs", str(tmp_path / "one"), *sets]
    subprocess.run(single, check=True, env=env, capture_output=True, timeout=300)
    a = weights(tmp_path / "ddp/smoke/stage1/step000003.pt")
    b = weights(tmp_path / "one/smoke/stage1/step000003.pt")
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5, msg=key)


@pytest.mark.parametrize("args, message", [
    (["params/nope.yaml"], "error: params file not found: params/nope.yaml"),
    (["params/stage1.yaml", "--profile", "smoke", "--set", "train.bach_size=2"],
     "error: --set train.bach_size=2: unknown key train.bach_size; did you mean train.batch_size?"),
    (["params/base.yaml"], "error: params/base.yaml: stage is not set (null); train a stage or ablation file "
                           "that names one, e.g. params/stage1.yaml"),
    (["params/stage1.yaml", "--set", "schedule.lr=null"],
     "error: --set schedule.lr=null: schedule.lr should be float, got None"),
    (["params/stage1.yaml", "--set", "train.log_every=0"], "error: train.log_every should be an integer >= 1, got 0"),
    (["params/stage2.yaml", "--set", "init_from=stage_1"], "error: params/stage2.yaml: init_from stage_1 names no stage in params"),
    (["params/stage1.yaml", "--set", "optim.betas=[0.9,"],
     "error: --set optim.betas=[0.9,: '[0.9,' is not a valid YAML value (expected the node content, "
     "but found '<stream end>' at line 1, column 6)"),
])
def test_train_command_errors_are_one_line(args, message):
    root = PARAMS.parent
    done = subprocess.run([sys.executable, "-m", "s23dr.train", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == message


@pytest.mark.parametrize("command, args", [
    (s23dr_train, ["params/stage1.yaml", "--profile", "smoke", "--device", "cuda:99"]),
    (bench, ["--profile", "smoke", "--device", "cuda:99"]),
    (bench, ["--steps", "0"]),
    (bench, ["--warmup", "-1"]),
    (bench, ["--profile", "smoke", "--set", "loss.sinkhorn.eps=0"]),
])
def test_command_arguments_are_checked_in_one_line(command, args, capsys, monkeypatch):
    monkeypatch.chdir(PARAMS.parent)
    monkeypatch.setattr(bench, "measure", lambda *a: pytest.fail("measured before the arguments were checked"))
    monkeypatch.setattr(s23dr_train, "run_stage", lambda *a: pytest.fail("trained before --device was checked"))
    assert command.main(args) == 2
    err = capsys.readouterr().err
    expected = {"--device": r"--device cuda:99: (CUDA is not available on this machine; use --device cpu"
                            r"|this machine has \d+ CUDA device\(s\), cuda:0 to cuda:\d+)",
                "--steps": "--steps should be an integer >= 1, got 0",
                "--warmup": "--warmup should be an integer >= 0, got -1",
                "--set": r"loss.sinkhorn.eps should be a number > 0.0, got 0.0"}
    assert re.fullmatch(rf"error: {expected[args[-2]]}\n", err)


@pytest.mark.parametrize("device", ["", "0"])
def test_a_device_that_names_none_is_refused_not_taken_as_the_default(device, capsys, monkeypatch):
    monkeypatch.chdir(PARAMS.parent)
    monkeypatch.setattr(s23dr_train, "run_stage", lambda *a: pytest.fail("trained on the default device"))
    assert s23dr_train.main(["params/stage1.yaml", "--profile", "smoke", "--device", device]) == 2
    assert capsys.readouterr().err == f"error: --device {device}: expected cpu, cuda or cuda:N\n"


def ctrl_c():
    raise KeyboardInterrupt


@pytest.mark.parametrize("stop, reached, saved", [
    (ctrl_c, 3, 2),  # an interrupt inside a step: the periodic checkpoint
    (lambda: os.kill(os.getpid(), signal.SIGINT), 4, 4),  # the command's handler: the step ends and is saved
    (lambda: os.kill(os.getpid(), signal.SIGTERM), 4, 4),
], ids=["interrupt", "ctrl-c", "sigterm"])
def test_ctrl_c_names_the_step_reached_and_how_to_resume(synthetic_root, tmp_path, capsys, monkeypatch, stop,
                                                          reached, saved):
    real = loop.lr_at

    def interrupt_at_step_4(step, schedule):
        if step == 4:
            stop()
        return real(step, schedule)

    monkeypatch.setattr(loop, "lr_at", interrupt_at_step_4)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # SIGINT is ignored in a background job
    status = s23dr_train.main([str(PARAMS / "stage1.yaml"), "--profile", "smoke", "--runs", str(tmp_path),
                               "--device", "cpu", "--set", f"data.train={synthetic_root}/sampled_{{points}}:train",
                               "--set", f"data.val={synthetic_root}/sampled_{{points}}:validation",
                               "--set", "train.ckpt_every=2", "--set", "train.eval_every=100", "--set", "seeds=1"])
    run_dir = tmp_path / "smoke" / "stage1"
    assert status == 130
    assert (f"\ninterrupted: {run_dir} at step {reached}; the same command resumes it from "
            f"{run_dir / f'step{saved:06d}.pt'}\n" in capsys.readouterr().err)  # the line, between the progress bar's
    assert not (run_dir / "lock").exists()
    assert {sig: signal.getsignal(sig) for sig in before} == before, "the command leaves the handlers as it found them"
    assert not loop.STOP.is_set() and not loop.STOPPABLE.is_set()


# --- a run directory shared, a full disk, a kill, invalid scenes ------------------------

def dead_pid():
    """The pid of a process that has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_second_training_in_a_run_directory_is_refused(synthetic_root, tmp_path):
    run_dir = tmp_path / "runs" / "smoke" / "stage1"
    run_dir.mkdir(parents=True)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (run_dir / "lock").write_text(f"{other.pid} {socket.gethostname()}\n")
        refused = f"{re.escape(str(run_dir))} is in use by another training, pid {other.pid}"
        with pytest.raises(FileExistsError, match=refused):
            train(smoke("stage1", synthetic_root), run_dir, progress=False)
        with pytest.raises(FileExistsError, match=refused):  # --restart must not remove its directory
            run_stage(smoke("stage1", synthetic_root, "seeds=1"), tmp_path / "runs", restart=True, progress=False)
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in run_dir.iterdir()) == ["lock"]


def test_a_stale_lock_and_the_temporary_files_of_killed_saves_are_cleared(synthetic_root, tmp_path, capsys):
    run_dir, dead = tmp_path / "run", dead_pid()
    run_dir.mkdir()
    (run_dir / "lock").write_text(f"{dead} {socket.gethostname()}\n")
    (run_dir / f".step000010.pt.tmp{dead}").write_bytes(b"half a checkpoint")
    alive = run_dir / f".step000010.pt.tmp{os.getppid()}"  # a running process may still write it
    alive.write_bytes(b"")
    train(smoke("stage1", synthetic_root, "schedule.end_step=2"), run_dir, progress=False)
    assert f"{run_dir}: taking over the lock of pid {dead}, which no longer runs" in capsys.readouterr().out
    assert sorted(p.name for p in run_dir.iterdir()) == [alive.name, MetricsLog.FILE, "step000002.inputs",
                                                          "step000002.pt"]


def fake_checkpoint(path, params, upstream=None):
    """A checkpoint's keys with no weights: what `run_stage` reads to decide what to do."""
    return checkpoint.save({"step": 2, "model": {}, "inputs": {"params": params, "upstream": upstream}}, path)


def test_restart_removes_only_the_files_of_the_run_it_retrains(tmp_path, monkeypatch):
    params = smoke("stage1", tmp_path, "seeds=1")
    stage_dir = tmp_path / "runs" / "smoke" / "stage1"
    other_seed = fake_checkpoint(stage_dir / "seed1" / "step000002.pt", params)  # a run of a 3-seed stage1
    stale = fake_checkpoint(stage_dir / "step000002.pt", {**params, "seeds": 2})
    trained = []
    monkeypatch.setattr(s23dr_train, "train", lambda params, run_dir, **kw: trained.append(run_dir))
    run_stage(params, tmp_path / "runs", restart=True, progress=False)
    assert trained == [stage_dir] and not stale.exists() and other_seed.is_file()


def test_restart_never_removes_the_checkpoint_it_starts_from(tmp_path, monkeypatch):
    params = smoke("stage2", tmp_path, "seeds=1")
    init = fake_checkpoint(tmp_path / "runs" / "smoke" / "stage2" / "step000002.pt", params)
    monkeypatch.setattr(s23dr_train, "train", lambda *a, **kw: pytest.fail("trained"))
    with pytest.raises(ValueError, match=rf"--restart would remove {re.escape(str(init))}, which this training reads"):
        run_stage(params, tmp_path / "runs", init=init, restart=True, progress=False)
    assert init.is_file()


def test_a_run_directory_is_never_outside_its_runs_directory(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    kept = fake_checkpoint(elsewhere / "step000002.pt", {})
    (tmp_path / "runs" / "smoke").mkdir(parents=True)
    (tmp_path / "runs" / "smoke" / "stage1").symlink_to(elsewhere)
    monkeypatch.setattr(s23dr_train, "train", lambda *a, **kw: pytest.fail("trained outside the runs"))
    with pytest.raises(ValueError, match=r"stage1 lies outside \S+runs/smoke \(it resolves to \S+elsewhere\)"):
        run_stage(smoke("stage1", tmp_path, "seeds=1"), tmp_path / "runs", restart=True, progress=False)
    assert kept.is_file()


def test_a_refused_run_leaves_no_empty_run_directory(tmp_path):
    params = smoke("stage1", tmp_path / "no-data")
    with pytest.raises(OSError):
        train(params, tmp_path / "runs" / "smoke" / "stage1" / "seed0", progress=False)
    assert sorted(tmp_path.iterdir()) == []


def test_init_that_a_resumed_run_would_ignore_is_refused(tmp_path, monkeypatch):
    params = smoke("stage2", tmp_path, "seeds=1")
    run_dir = tmp_path / "runs" / "smoke" / "stage2"
    init = fake_checkpoint(tmp_path / "init.pt", params)
    fake_checkpoint(run_dir / "step000002.pt", params, upstream={"step": 2, "inputs": "another run"})
    monkeypatch.setattr(s23dr_train, "train", lambda *a, **kw: pytest.fail("--init ignored"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(run_dir))}: its run started from another checkpoint "
                                         rf"than --init {re.escape(str(init))}.*add --restart"):
        run_stage(params, tmp_path / "runs", init=init, progress=False)


@pytest.mark.parametrize("asked", [{"restart": True}, {"resume": "step000002.pt"}])
def test_restart_or_resume_says_a_current_run_is_kept(tmp_path, monkeypatch, capsys, asked):
    monkeypatch.setattr(s23dr_train, "is_current", lambda *a: True)
    run_stage(smoke("stage1", tmp_path, "seeds=1"), tmp_path / "runs", **asked)
    assert capsys.readouterr().out == f"{tmp_path / 'runs/smoke/stage1'}: current (made from these params, code " \
                                      f"and upstream run); kept\n"


@pytest.mark.parametrize("error, free", [
    (RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 4544 vs 4442"), 0),
    (OSError(errno.ENOSPC, "No space left on device"), 10**9),
])
def test_a_full_disk_names_the_checkpoint_and_leaves_no_temporary_file(tmp_path, monkeypatch, error, free):
    def fail(state, f):
        f.write(b"part of a checkpoint")
        raise error

    monkeypatch.setattr(torch, "save", fail)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=10**9, used=10**9 - free, free=free))
    path = tmp_path / "step000010.pt"
    with pytest.raises(OSError, match=f"cannot write {re.escape(str(path))}: no space left on the device"):
        checkpoint.save({"step": 10, "model": {}, "inputs": {}}, path)
    assert list(tmp_path.iterdir()) == []


def test_resume_prints_where_and_evaluates_a_checkpoint_killed_before_its_evaluation(synthetic_root, tmp_path,
                                                                                     capsys):
    params = smoke("stage1", synthetic_root, "schedule.end_step=10", "seeds=1")  # train.eval_every=10
    (final,) = run_stage(params, tmp_path, progress=False)
    log = final.parent / MetricsLog.FILE
    rows = MetricsLog.read(log)
    log.write_text("".join(json.dumps(r) + "\n" for r in rows if r["kind"] not in ("eval", "final")))  # killed before it,
    rundir.stamp_file(final).unlink()  # so before the final checkpoint was stamped
    capsys.readouterr()
    resumed = smoke("stage1", synthetic_root, "schedule.end_step=10", "seeds=1", "train.log_every=5")  # resumable
    assert run_stage(resumed, tmp_path, progress=False) == [final]
    assert f"resumed {final.parent} from {final} (step 10)" in capsys.readouterr().out
    assert s23dr_train.is_current(resumed, final.parent, None), "stamped with the params it was resumed with"
    again = MetricsLog.read(log)
    assert [r for r in again if r["kind"] != "run"] == [r for r in rows if r["kind"] != "run"]  # the same evaluation
    assert [r["step"] for r in again if r["kind"] == "run"] == [0, 10]  # and how each part ran


def write_npz(folder, scenes):
    folder.mkdir(parents=True)
    for scene in scenes:
        np.savez(folder / f"{scene['order_id']}.npz", **scene)


def test_invalid_scenes_stop_training_before_step_1_or_are_dropped(synthetic_root, tmp_path, caplog):
    source = open_dataset(f"{synthetic_root}/sampled_128:train")
    scenes = [{k: np.array(v) for k, v in source[i].items()} for i in range(9)]
    scenes[5]["vote_frac"][0] = np.nan
    write_npz(tmp_path / "data" / "train", scenes[:8])
    write_npz(tmp_path / "data" / "validation", scenes[8:])
    data = (f"data.train={tmp_path}/data:train", f"data.val={tmp_path}/data:validation", "schedule.end_step=2")
    bad = scenes[5]["order_id"]
    with pytest.raises(ValueError, match=rf"scene '{bad}': non-finite values \(NaN or inf\) in vote_frac \(1 of 8 "
                                         r"scenes .* invalid: .*\); set data.drop_invalid=true .* data.bad_samples"):
        train(load_params(PARAMS / "stage1.yaml", "smoke", data), tmp_path / "run", progress=False)
    assert not list((tmp_path / "run").glob("step*"))
    with caplog.at_level(logging.WARNING, logger="s23dr.data"):
        final = train(load_params(PARAMS / "stage1.yaml", "smoke", [*data, "data.drop_invalid=true"]),
                      tmp_path / "run", progress=False)
    assert final.name == "step000002.pt"
    assert f"left out 1 invalid scenes ({bad})" in caplog.text


def test_cpu_precision_is_decided_by_what_the_cpu_reports(monkeypatch):
    from s23dr import inference

    cpu = torch.device("cpu")
    at = lambda precision: {"train": {"bf16": True, "cpu_precision": precision}}  # noqa: E731
    assert not inference.uses_bf16(at("fp32"), cpu) and inference.uses_bf16(at("bf16"), cpu)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    for kernels in ("AVX512", "AVX2", "DEFAULT"):  # ATEN_CPU_CAPABILITY lowers the kernels torch runs
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: kernels)
        for native in (False, True):  # auto follows the CPU's bf16 instructions and kernels, and nothing else
            monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native)
            expected = native and kernels == "AVX512"
            assert [inference.uses_bf16(at("auto"), cpu) for _ in range(5)] == [expected] * 5
    with pytest.raises(ValueError, match="train.cpu_precision"):
        inference.uses_bf16(at("half"), cpu)


def test_a_run_logs_how_it_ran(synthetic_root, tmp_path):
    train(smoke("stage1", synthetic_root, "schedule.end_step=2"), tmp_path / "r", progress=False)
    (row,) = [r for r in MetricsLog.read(tmp_path / "r" / MetricsLog.FILE) if r["kind"] == "run"]
    assert row["precision"] == "fp32" and row["torch"] == torch.__version__ and row["train_scenes"] == 32
    assert row["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()


def test_a_model_without_confidence_trains_and_keeps_every_segment(synthetic_root, tmp_path):
    """model.segment_conf false, end to end: the run trains (loss.conf.weight 0) and evaluates,
    and its wireframes keep every predicted segment, as confidences of 1 at any threshold would."""
    params = smoke("stage1", synthetic_root, "schedule.end_step=2", "model.segment_conf=false", "loss.conf.weight=0")
    final = train(params, tmp_path / "run", progress=False)
    assert [r["hss"] >= 0 for r in MetricsLog.evals(MetricsLog.read(tmp_path / "run" / MetricsLog.FILE))] == [True]
    cpu = torch.device("cpu")
    model, saved = predict.load_model(final, cpu)
    scenes = first(open_dataset(data_uri(params, "val")), 4)
    segments, conf, _ = inference.predict_segments(model, scenes, saved, cpu)
    assert conf is None
    every = inference.to_wireframes(scenes, segments, np.ones(segments.shape[:2]), saved)
    assert sum(len(edges) for _, edges in every) > 0
    for record, (vertices, edges) in zip(predict.submission(model, saved, scenes, cpu), every):
        assert record["wf_vertices"] == vertices.tolist() and record["wf_edges"] == edges.tolist()


def test_what_retrains_is_what_a_training_run_imports():
    """The code version hashes the modules `s23dr.train` runs; a module that only presents
    results is not one of them, and the synthetic data's stamp covers the writer's and the generator's."""
    def names(entry):
        return {p.relative_to(rundir.PACKAGE).with_suffix("").as_posix() for p in rundir.imported_modules(entry)}

    trained = names("train")
    assert {"train", "loop", "model", "losses", "matcher", "data", "features", "config", "checkpoint",
            "rundir", "memory"} <= trained
    assert not {t for t in trained if t.startswith(("analysis", "world"))} | trained & {"pipeline", "bench", "synthetic_data"}
    assert names("synthetic_data") == {"synthetic_data", "world/__init__", "world/synthetic", "world/sampling",
                                       "world/houses", "schema", "memory"}


# --- the GPU trainer's data path, evaluation and step (checked on the CPU) -----------------

def test_one_loader_serves_every_epoch_from_any_step(synthetic_root):
    """`loop.batches` crosses epoch boundaries in one loader, with each epoch's order and
    augmentation, alike in this process and in a worker process that starts once."""
    from s23dr.data import SceneDataset, collate
    params = smoke("stage1", synthetic_root)
    cfg = params["train"]
    dataset = SceneDataset(open_split(params, "train", progress=False), params["data"]["points"],
                           params["data"]["augment"], cfg["seed"])
    per_epoch = len(dataset) // cfg["batch_size"]
    want = [(0, b) for b in EpochBatches(len(dataset), cfg["batch_size"], cfg["seed"], 0, per_epoch - 1).batches]
    want += [(1, b) for b in EpochBatches(len(dataset), cfg["batch_size"], cfg["seed"], 1).batches[:2]]
    for workers in (0, 1):
        run = {**params, "data": {**params["data"], "num_workers": workers}}
        data = loop.batches(dataset, run, torch.device("cpu"), local_step=per_epoch - 1)
        for epoch, indices in want:
            got, expected = next(data), collate([dataset[(epoch, i)] for i in indices])
            assert got["order_id"] == expected["order_id"]
            assert torch.equal(got["xyz_norm"], expected["xyz_norm"]) and torch.equal(got["aug"], expected["aug"])


def test_the_training_loss_of_an_evaluation_is_on_a_fixed_sample(synthetic_root):
    """eval.train_scenes caps the training scenes whose loss the train/val ratio takes, as does
    eval.max_scenes; the validation scenes stay eval.max_scenes."""
    from s23dr import inference
    for max_scenes, train_scenes, expected in ((None, 3, (8, 3)), (5, 3, (5, 3)), (2, 3, (2, 2))):
        params = smoke("stage1", synthetic_root, f"eval.train_scenes={train_scenes}")
        params["eval"]["max_scenes"] = max_scenes  # null: a profile's int cannot be overridden with it
        train_scenes = open_split(params, "train", progress=False)
        validation = inference.Validation(open_split(params, "val", progress=False), params,
                                          torch.device("cpu"), train_scenes)
        held = [[i for batch in split for i in batch["order_id"]] for split in (validation.val, validation.train)]
        assert tuple(map(len, held)) == expected
        assert held[1] == train_scenes.order_ids[:expected[1]]


def test_an_evaluation_made_ready_once_reads_as_the_scenes_read_afresh(synthetic_root):
    """`inference.Validation` keeps its batches for the run: evaluating twice from them gives
    the outputs and losses of batches made from the scenes each time, and the model's
    training mode back."""
    from s23dr import inference
    cpu = torch.device("cpu")
    params = smoke("stage1", synthetic_root)
    model, criterion, _ = loop.build(params)
    train_scenes, val_scenes = (open_split(params, split, progress=False) for split in ("train", "val"))
    validation = inference.Validation(val_scenes, params, cpu, train_scenes)
    model.train()
    rows = [validation.run(model, criterion)() for _ in range(2)]
    assert model.training
    assert rows[0] == rows[1]
    segments, conf, val_loss = inference.predict_segments(model, validation.scenes, params, cpu, criterion)
    _, scores = inference.score_predictions(validation.scenes, segments, conf, params)
    assert (rows[0]["val_loss"], rows[0]["hss"], rows[0]["f1"]) == (val_loss, scores.mean.hss, scores.mean.f1)
    assert rows[0]["train_loss"] > 0 and rows[0]["ratio"] == val_loss / rows[0]["train_loss"]


@pytest.mark.parametrize("aux", [0.0, 1.0])
def test_the_head_reads_the_earlier_decoder_layers_only_where_the_loss_does(aux):
    params = load_params(PARAMS / "stage1.yaml", "smoke", ["model.decoder_layers=3", f"loss.aux.weight={aux}"])
    model, criterion, _ = loop.build(params)
    forward = loop.forward_loss(model, criterion, params, torch.device("cpu"))
    batch = bench.synthetic_batch(params["data"]["points"], 2, torch.device("cpu"))
    read = []
    model.register_forward_hook(lambda module, args, kwargs, out: read.append(len(out["layers"])), with_kwargs=True)
    with torch.no_grad():
        losses, every = forward(batch), model(batch)
    assert read == [2 if aux else 0, 2]
    assert torch.equal(losses["total"], criterion(every, batch)["total"])


def test_a_compiled_cpu_step_without_a_cpp_compiler_is_refused_in_one_line(monkeypatch):
    """The `cpu` profile compiles its long stages; where no C++ compiler is found, the trainer
    says so before training, not with inductor's traceback at the first step."""
    monkeypatch.setattr(torch._inductor.config.cpp, "cxx", ("no-such-cxx-s23dr",))
    params = load_params(PARAMS / "stage1.yaml", "cpu")
    assert params["train"]["compile"]
    model, criterion, _ = loop.build(params)
    with pytest.raises(RuntimeError, match=r"needs a C\+\+ compiler .* set train.compile=false"):
        loop.forward_loss(model, criterion, params, torch.device("cpu"))


def test_the_full_profiles_compiled_step_on_a_cpu_is_one_graph_that_never_recompiles():
    """`full` compiles the step on any device. On a CPU its precision (`auto`) was asked of the
    CPU inside the step, where dynamo breaks the graph, and the resumed frame recompiled at every
    step until dynamo gave up. The model at `full`'s size on a small batch, traced by dynamo alone
    (inductor would take minutes on a CPU): one graph, and no recompile over three steps."""
    params = load_params(PARAMS / "stage1.yaml", "full")
    assert params["train"]["compile"] and params["train"]["cpu_precision"] == "auto"
    model, criterion, optimizer = loop.build(params)
    forward = loop.ForwardLoss(model, criterion, params, torch.device("cpu"))
    batch = bench.synthetic_batch(256, 2, torch.device("cpu"))
    torch._dynamo.reset()
    compiled = torch.compile(forward, backend="eager", fullgraph=True)
    with torch._dynamo.config.patch(error_on_recompile=True):
        losses = [loop.train_step(compiled, optimizer, batch, lr=1e-4)["total"].item() for _ in range(3)]
    assert all(np.isfinite(losses))


CAPTURE_STEP = """
import torch
from s23dr import bench, loop
from s23dr.config import load_params
params = load_params("params/stage1.yaml", "smoke")
model, criterion, _ = loop.build(params)
forward = loop.ForwardLoss(model, criterion, params, torch.device("cpu"))
graphs = []
def capture(gm, inputs):
    graphs.append(gm)
    return gm.forward
torch.compile(forward, backend=capture)(bench.synthetic_batch(32, 2, torch.device("cpu")))
for gm in graphs:
    print(gm.code)
    print("autocast nodes:", sum("autocast" in str(node.target) for node in gm.graph.nodes))
"""


def test_the_compiled_step_is_the_same_graph_in_every_process_and_cacheable():
    """Inductor's and AOTAutograd's caches serve a compiled step to a later process only if it is
    the same graph with no autocast nodes. The tokenizer read the batch's fields in a set's
    order, which changes with PYTHONHASHSEED, and an autocast switched off where none was on
    left nodes that AOTAutograd's cache refuses: every trainer process compiled again. The
    step traced by dynamo alone in two processes of other hash seeds: the same graphs, none
    with an autocast node."""
    def traced(hash_seed):
        env = {**os.environ, "PYTHONHASHSEED": str(hash_seed)}
        return subprocess.run([sys.executable, "-c", CAPTURE_STEP], cwd=PARAMS.parent, env=env, check=True,
                              capture_output=True, text=True).stdout

    graphs = traced(1)
    counts = re.findall(r"autocast nodes: (\d+)", graphs)
    assert counts and set(counts) == {"0"}
    assert traced(2) == graphs


#: What inductor's cache key pickles of a tensor (its metadata), as bytes in hex: in this process, then
#: in a trainer process started as `pipeline.prepare_runs` starts them from `python -m s23dr.pipeline`
#: (spawned, importing the pipeline module as `__mp_main__`), one line each.
TENSOR_KEY = """
def main():
    import importlib.util, multiprocessing, sys
    from concurrent.futures import ProcessPoolExecutor
    key = ("__import__('torch._inductor.codecache', fromlist=['_']).FxGraphCachePickler(None).dumps("
           "__import__('torch._inductor.codecache', fromlist=['_']).extract_tensor_metadata_for_cache_key("
           "__import__('torch').zeros(2, 3))).hex()")
    print(eval(key))
    sys.modules["__main__"].__spec__ = importlib.util.find_spec("s23dr.pipeline")
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as trainer:
        print(trainer.submit(eval, key).result())

main()
"""


def test_a_trainer_process_keys_the_compiled_step_as_any_other_process():
    """The trainer processes of the book's build import the pipeline module as `__mp_main__`, and
    pickle names a torch memory format by the first module that reaches it as `<module>.torch`:
    the pipeline's module-level `torch` gave every tensor of the step's cache key other bytes
    there, so each page that runs a step compiled it again (some 90 s a shape)."""
    here, trainer = subprocess.run([sys.executable, "-c", TENSOR_KEY], cwd=PARAMS.parent, check=True,
                                   capture_output=True, text=True, timeout=300).stdout.split()
    assert here == trainer


def test_bench_measures_the_loader_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--profile", "smoke", "--device", "cpu", "--loader-only", "--scenes", "8",
                       "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["stage"], r["points"]) for r in rows] == [("stage1", 128), ("stage2", 256)]
    assert all(r["loader_items_per_s_per_process"] > 0 for r in rows)
    assert "items/s a process" in capsys.readouterr().out


def test_rerun_runs_only_a_benchmark_script(tmp_path):
    marker = tmp_path / "ran"
    result = tmp_path / "result.json"
    for command in (["-c", f"open({str(marker)!r}, 'w')"], ["../lib/s23dr/train.py", "params/stage1.yaml"],
                    ["benchmarks/loss_choice.py", 7]):
        result.write_text(json.dumps({"command": command}))
        done = subprocess.run([sys.executable, "benchmarks/rerun.py", str(result)], cwd=PARAMS.parent,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stdout == "" and not marker.exists()
        assert re.fullmatch(rf"error: {re.escape(str(result))}: command .* is not one of the scripts in "
                            rf"\S+benchmarks with its arguments; refused\n", done.stderr)


def test_a_run_is_stale_when_the_recipe_of_a_run_upstream_changed(synthetic_root, tmp_path):
    """Editing stage 1's params makes stages 2 and 3 stale before stage 1 is trained again:
    refused, naming the stage to train first; once it is, stage 2 trains anew from it."""
    folder, runs = tmp_path / "params", tmp_path / "runs"
    shutil.copytree(PARAMS, folder)

    def stage(name):
        return load_params(folder / f"{name}.yaml", "smoke", [
            f"data.train={synthetic_root}/sampled_{{points}}:train",
            f"data.val={synthetic_root}/sampled_{{points}}:validation"])

    for name in ("stage1", "stage2", "stage3"):
        (final,) = run_stage(stage(name), runs, progress=False, seed=353, folder=folder)
    assert run_stage(stage("stage3"), runs, progress=False, seed=353, folder=folder) == [final]
    text = (folder / "stage1.yaml").read_text()
    (folder / "stage1.yaml").write_text(text.replace("lr: 3.0e-4", "lr: 2.0e-4"))
    for name in ("stage2", "stage3"):
        with pytest.raises(ValueError, match=r"stage1/seed353, which is not current.*train stage stage1 first"):
            run_stage(stage(name), runs, restart=True, progress=False, seed=353, folder=folder)
    run_stage(stage("stage1"), runs, restart=True, progress=False, seed=353, folder=folder)
    with pytest.raises(ValueError, match="train stage stage2 first"):
        run_stage(stage("stage3"), runs, restart=True, progress=False, seed=353, folder=folder)
    (again,) = run_stage(stage("stage2"), runs, restart=True, progress=False, seed=353, folder=folder)
    assert checkpoint.load(again)["inputs"]["params"]["init_from"] == "stage1"
    assert run_stage(stage("stage3"), runs, restart=True, progress=False, seed=353, folder=folder) == [final]


def test_a_run_keeps_its_newest_checkpoints_and_every_finished_final(synthetic_root, tmp_path):
    """train.keep_checkpoints: older checkpoints are removed after each save, never a stamped
    final (what the stages after it start from); resume and `checkpoint.latest` read the newest."""
    run_dir = tmp_path / "run"
    keep = ["train.ckpt_every=5", "train.keep_checkpoints=2", "seeds=1"]
    train(smoke("stage1", synthetic_root, "schedule.end_step=10", *keep), run_dir, progress=False)
    assert sorted(p.name for p in run_dir.glob("step*.pt")) == ["step000005.pt", "step000010.pt"]
    final = train(smoke("stage1", synthetic_root, "schedule.end_step=25", *keep), run_dir, progress=False)
    assert sorted(p.name for p in run_dir.glob("step*")) == [
        "step000010.inputs", "step000010.pt", "step000020.pt", "step000025.inputs", "step000025.pt"]
    assert checkpoint.latest(run_dir) == final == run_dir / "step000025.pt"
    with pytest.raises(Exception, match="keep_checkpoints"):
        smoke("stage1", synthetic_root, "train.keep_checkpoints=0")


def test_a_schedule_far_beyond_the_recipe_is_refused_without_allow_long(tmp_path, capsys, monkeypatch):
    """One line naming the key, the value and the limit (10x the recipe's steps at the profile), before any work."""
    monkeypatch.setattr(s23dr_train, "run_stage", lambda *a, **k: [tmp_path / "trained"])
    args = [str(PARAMS / "stage1.yaml"), "--profile", "cpu", "--runs", str(tmp_path),
            "--set", "schedule.end_step=1000000000"]
    assert s23dr_train.main(args) == 2
    assert capsys.readouterr().err == (
        f"error: {PARAMS / 'stage1.yaml'}: schedule.end_step 1000000000 is beyond 12500, 10x the cpu recipe's "
        f"1250 steps from start_step 0; add --allow-long to train that long\n")
    assert s23dr_train.main(args + ["--allow-long"]) == 0
    assert s23dr_train.main(args[:-1] + ["schedule.end_step=12500"]) == 0


def test_a_runs_follow_ups_are_kept_beside_its_checkpoint_and_read_while_it_is_current(synthetic_root, tmp_path, monkeypatch):
    """What the pipeline does on a trained run in its trainer processes (`pipeline.follow_ups`), the
    checkpoint scored at the other point count and the run trained again, is kept beside the final
    checkpoint and read, not made again, until the checkpoint changes."""
    from s23dr.analysis import point_counts, reproducibility

    params = smoke("stage1", synthetic_root, "schedule.end_step=2", "train.deterministic=true", "eval.max_scenes=2")
    run = SimpleNamespace(dir=tmp_path / "stage1", params=params, upstream=None)
    final = train(params, run.dir, progress=False)
    counts = (params["data"]["points"], 2 * params["data"]["points"])
    row = point_counts.at_other_points(run, counts, "cpu")
    twice = reproducibility.trained_twice(run, "cpu")
    assert row["points"] == counts[1] and len(row["scenes"]) == 2
    assert twice["row"]["bit-identical"] == twice["row"]["tensors"] and twice["hss"][0] == twice["hss"][1]

    def made_again(*args, **kwargs):
        raise AssertionError("made again while current")

    monkeypatch.setattr(point_counts, "score_model", made_again)
    monkeypatch.setattr(reproducibility, "train", made_again)
    assert point_counts.at_other_points(run, counts, "cpu") == row
    assert reproducibility.trained_twice(run, "cpu") == twice
    rundir.mark_current(final, {"another": "checkpoint"})  # the run trained anew from other inputs
    with pytest.raises(AssertionError, match="made again"):
        point_counts.at_other_points(run, counts, "cpu")
    with pytest.raises(AssertionError, match="made again"):
        reproducibility.trained_twice(run, "cpu")
