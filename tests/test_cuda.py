"""The CUDA paths: bf16 autocast, torch.compile and CUDA graphs, fused AdamW, deterministic training
and the attention without a key mask.

Skipped where no GPU is present (CI); run them on a GPU machine with `pytest tests/test_cuda.py`.
"""

import copy
import os

import pytest
import torch

from s23dr import checkpoint
from s23dr.config import load_params
from s23dr.data import SceneDataset, collate, open_split, to_device
from s23dr.inference import autocast
from s23dr.losses import Criterion
from s23dr.model import Perceiver
from s23dr.world.sampling import sample_scene
from s23dr.world.synthetic import generate_scene
from s23dr.loop import batches, build, forward_loss, train, train_step
from s23dr.rundir import MetricsLog

from test_trainer import PARAMS, assert_same_weights, smoke, weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts, for determinism
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def setup():
    """The cpu profile's model and a batch of 8 synthetic scenes, on the GPU."""
    params = load_params(PARAMS / "stage1.yaml", "cpu")
    points = params["data"]["points"]
    scenes = [sample_scene(generate_scene(0, i, "train"), points, seed=0) for i in range(8)]
    dataset = SceneDataset(scenes, points, {"rotate": False, "flip": False}, seed=0)
    batch = to_device(collate([dataset[i] for i in range(8)]), CUDA)
    model = Perceiver(**params["model"]).to(CUDA).eval()
    return params, model, batch, Criterion(**params["loss"])


def test_bf16_autocast_stays_close_to_fp32_and_the_loss_stays_fp32(setup):
    params, model, batch, criterion = setup
    with torch.no_grad():
        exact = criterion(model(batch), batch)
        params = {**params, "train": {**params["train"], "bf16": True}}
        with autocast(params, CUDA):
            out = model(batch)
        fast = criterion(out, batch)
    assert fast["total"].dtype == torch.float32
    assert fast["total"].item() == pytest.approx(exact["total"].item(), rel=0.02)


def test_compiled_model_matches_eager(setup):
    _, model, batch, _ = setup
    with torch.no_grad():
        eager = model(batch)
        compiled = torch.compile(model)(batch)
    for key in ("segments", "conf_logits"):
        torch.testing.assert_close(compiled[key].float(), eager[key].float(), atol=1e-4, rtol=1e-4)


def test_deterministic_cuda_runs_are_bit_identical(synthetic_root, tmp_path):
    params = smoke("stage1", synthetic_root, "train.deterministic=true", "schedule.end_step=5")
    assert_same_weights(weights(train(params, tmp_path / "a", device="cuda", progress=False)),
                        weights(train(params, tmp_path / "b", device="cuda", progress=False)))


@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_compiled_bf16_fused_training_runs_and_its_checkpoint_loads_on_cpu(synthetic_root, tmp_path, mode):
    params = smoke("stage1", synthetic_root, "train.compile=true", f"train.compile_mode={mode}",
                   "train.bf16=true", "schedule.end_step=6")
    final = train(params, tmp_path / "run", device="cuda", progress=False)
    state = checkpoint.load(final)
    assert state["step"] == 6
    assert all(t.device.type == "cpu" and torch.isfinite(t).all() for t in state["model"].values())
    rows = MetricsLog.read(tmp_path / "run" / MetricsLog.FILE)
    losses = torch.tensor([row["total"] for row in MetricsLog.trains(rows)])
    assert len(losses) and torch.isfinite(losses).all()


def test_an_unpadded_batch_attends_without_a_key_mask_to_the_same_result(setup):
    """`Perceiver.forward` drops the key mask on CUDA when the batch has no padding (FlashAttention)."""
    params, model, batch, _ = setup
    full = {**batch, "mask": torch.ones_like(batch["mask"]), "padded": False}
    with torch.no_grad():
        fast, masked = model(full), model({**full, "padded": True})
    for key in ("segments", "conf_logits"):
        torch.testing.assert_close(fast[key], masked[key], atol=1e-4, rtol=1e-4)


def test_the_tokens_on_cuda_are_the_cpus(setup):
    """`features.embed` takes the one-hot path on CUDA and the lookup on the CPU."""
    params, model, batch, _ = setup
    on_cpu = {name: value.cpu() if torch.is_tensor(value) else value for name, value in batch.items()}
    with torch.no_grad():
        torch.testing.assert_close(model.tokenizer(batch).cpu(), copy.deepcopy(model.tokenizer).cpu()(on_cpu))


def test_the_full_profiles_step_runs_in_cuda_graphs_without_syncs_or_recompiling(synthetic_root):
    """At `full`'s compile_mode the model and the loss run in CUDA graphs, one compiled module; once both padding
    variants of a batch have been compiled, a step neither recompiles nor waits for the GPU."""
    from torch._dynamo.utils import counters

    mode = load_params(PARAMS / "stage1.yaml", "full")["train"]["compile_mode"]
    assert mode == "reduce-overhead"
    params = smoke("stage1", synthetic_root, "train.compile=true", f"train.compile_mode={mode}", "train.bf16=true")
    model, criterion, optimizer = build(params, CUDA)
    forward = forward_loss(model, criterion, params, CUDA)
    data = batches(SceneDataset(open_split(params, "train", progress=False), params["data"]["points"],
                                params["data"]["augment"]), params, CUDA)
    batch = to_device(next(data), CUDA)
    variants = [{**batch, "padded": True}, {**batch, "mask": torch.ones_like(batch["mask"]), "padded": False}]
    for _ in range(3):
        for b in variants:
            train_step(forward, optimizer, b, lr=1e-4)
    torch.cuda.synchronize()
    graphs, skips = counters["stats"]["unique_graphs"], counters["inductor"]["cudagraph_skips"]
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            for b in variants:
                losses = train_step(forward, optimizer, b, lr=1e-4)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert counters["stats"]["unique_graphs"] == graphs, "a step recompiled"
    assert skips == 0 and counters["inductor"]["cudagraph_skips"] == 0, "a graph ran outside CUDA graphs"
    assert torch.isfinite(losses["total"]).item()


def test_the_graphed_steps_losses_match_the_eager_steps(synthetic_root):
    """20 steps of `full`'s compiled step (CUDA graphs, bf16) against the same steps eager: the
    same losses within bf16's tolerance."""
    mode = load_params(PARAMS / "stage1.yaml", "full")["train"]["compile_mode"]
    losses = {}
    for compile in (False, True):
        params = smoke("stage1", synthetic_root, f"train.compile={str(compile).lower()}",
                       f"train.compile_mode={mode}", "train.bf16=true")
        model, criterion, optimizer = build(params, CUDA)
        forward = forward_loss(model, criterion, params, CUDA)
        data = batches(SceneDataset(open_split(params, "train", progress=False), params["data"]["points"],
                                    params["data"]["augment"]), params, CUDA)
        losses[compile] = [train_step(forward, optimizer, to_device(next(data), CUDA), lr=1e-4)["total"].item()
                           for _ in range(20)]
    torch.testing.assert_close(losses[True], losses[False], rtol=3e-2, atol=1e-2)
