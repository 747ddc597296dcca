"""How fast the recipe's loss teaches a model to fit: overfit a few training scenes and watch.

    .venv/bin/python benchmarks/learning_speed.py [--scenes 64] [--steps 1600] [--every 200]
        [--profile cpu] [--set loss.matching=hungarian ...]
        [--out benchmarks/results/learning_speed/NAME.json --label "what it tries"]

Trains stage 1's model of the profile (default `cpu`) on its first `--scenes` training
scenes, without augmentation, at stage 1's batch size and learning-rate schedule (params
`--set` may change any key), and scores those same scenes. It is the gate for every change
meant to make the recipe learn faster (issue: the recipe learns at the embedded scale):
a loss that cannot overfit 64 scenes will not generalise from 2,000.

Prints, at each `--every` steps, on the fitted scenes:
- HSS at the seed's threshold (`eval.conf_threshold`, 0.7) and at 0.3, and the highest
  predicted confidence;
- the transport plan: the mean share of each GT segment's unit mass left unmatched (the
  plan's last row: the entropic plan's dustbin, or under `loss.matching=hungarian` the GT
  segments no query is assigned), and the mean over GT segments of the largest mass one
  query takes of it (under the entropic plan this is the best confidence target the GT can
  give: a query whose target stays below the threshold is never kept after training);
- the loss terms.
Then the steps it took to reach HSS 0.8 at the threshold (or that it did not), and the
plan's matched mass against cost: one query at a given cost from each GT segment, every
other query far away, which bounds the confidence target from above.
The machine's thread count and load average are printed: figures are seconds of this run.
The JSON files in benchmarks/results/learning_speed/ are such runs; the Results chapter
of the book tabulates them.
"""

import argparse
import os
import sys
import time

import numpy as np
import torch

from s23dr.bench import save_result
from s23dr.config import load_params
from s23dr.data import SceneDataset, collate, data_uri, open_dataset, trains_on_synthetic
from s23dr.inference import NO_AUGMENT, first, predict_segments, score_predictions
from s23dr.matcher import matched_mass_at_cost
from s23dr.world.synthetic import World
from s23dr.loop import build, forward_loss, lr_at, train_step

TARGET_HSS = 0.8
LOW_THRESHOLD = 0.3
COSTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4)


def plan_figures(model, criterion, batch):
    """Unmatched share of the GT mass and the mean best per-GT mass (the confidence ceiling), in eval mode."""
    with torch.no_grad():
        cost, plan = criterion.match(model(batch), batch)
    gt_mask = batch["gt_mask"]
    P = cost.shape[1]
    n_gt = gt_mask.sum()
    dustbin = (plan[:, P, :-1] * gt_mask).sum() / n_gt
    best = (plan[:, :P, :-1].amax(1) * gt_mask).sum() / n_gt
    return dustbin.item(), best.item()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--every", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", help="also write the figures to this JSON file")
    parser.add_argument("--label", help="what this run tries, for the JSON (default: the overrides)")
    args = parser.parse_args(argv)

    params = load_params("params/stage1.yaml", args.profile, args.set)
    sched, cfg = params["schedule"], params["train"]
    scenes = first(open_dataset(data_uri(params, "train")), args.scenes)
    items = SceneDataset(scenes, params["data"]["points"], NO_AUGMENT, cfg["seed"])
    fixed = collate([items[i] for i in range(min(len(items), 64))])  # for the plan figures
    model, criterion, optimizer = build(params)
    forward = forward_loss(model, criterion, params, torch.device("cpu"))  # the trainer's forward and loss
    threshold = params["eval"]["conf_threshold"]
    low = {**params, "eval": {**params["eval"], "conf_threshold": LOW_THRESHOLD}}
    print(f"profile {args.profile}, {len(scenes)} scenes at {params['data']['points']} points, "
          f"batch {cfg['batch_size']}, lr {sched['lr']:g} (warmup {sched['warmup']}), "
          f"{torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}; overrides: {args.set or 'none'}")
    header = (f"{'step':>6} {'HSS@' + format(threshold, 'g'):>8} {'HSS@0.3':>8} {'max conf':>8} "
              f"{'GT in dustbin':>13} {'best mass/GT':>12} {'loss':>7}  terms")
    print(header)

    rng = np.random.default_rng(cfg["seed"])
    rows, reached, running, start = [], None, {}, time.perf_counter()
    for step in range(1, args.steps + 1):
        model.train()
        pick = rng.choice(len(items), cfg["batch_size"], replace=len(items) < cfg["batch_size"])
        terms = train_step(forward, optimizer, collate([items[i] for i in pick]), lr_at(sched["start_step"] + step, sched))
        for k, v in terms.items():
            running[k] = running.get(k, 0.0) + v.item()
        if step % args.every and step != args.steps:
            continue
        model.eval()
        segments, conf, _ = predict_segments(model, scenes, params, torch.device("cpu"))
        hss = score_predictions(scenes, segments, conf, params)[1].mean.hss
        hss_low = score_predictions(scenes, segments, conf, low)[1].mean.hss
        dustbin, best = plan_figures(model, criterion, fixed)
        seen = args.every if step % args.every == 0 else step % args.every
        mean_terms = {k: v / seen for k, v in running.items()}
        running = {}
        row = {"step": step, "hss": hss, "hss_low": hss_low, "max_conf": float(conf.max()),
               "gt_dustbin": dustbin, "best_mass": best, "seconds": time.perf_counter() - start, **mean_terms}
        rows.append(row)
        terms_text = " ".join(f"{k} {v:.3f}" for k, v in mean_terms.items() if k != "total")
        print(f"{step:>6} {hss:>8.3f} {hss_low:>8.3f} {row['max_conf']:>8.2f} {dustbin:>13.2f} "
              f"{best:>12.2f} {mean_terms['total']:>7.3f}  {terms_text}", flush=True)
        if reached is None and hss >= TARGET_HSS:
            reached = step

    best_row = max(rows, key=lambda r: r["hss"])
    if reached:
        print(f"HSS@{threshold:g} >= {TARGET_HSS} on the {len(scenes)} fitted scenes after {reached} steps")
    else:
        print(f"HSS@{threshold:g} did not reach {TARGET_HSS} in {args.steps} steps: best "
              f"{best_row['hss']:.3f} at step {best_row['step']}")
    print(f"{args.steps} steps in {rows[-1]['seconds'] / 60:.1f} min (evaluations included)")
    cfg_ot = params["loss"]["sinkhorn"]
    ceiling = dict(zip(COSTS, matched_mass_at_cost(COSTS, cfg_ot["eps"], cfg_ot["iters"], cfg_ot["dustbin"],
                                                   params["model"]["segments"])))
    print("matched mass of a query at cost c from its GT (all other queries far away): " +
          ", ".join(f"c={c:g}: {m:.2f}" for c, m in ceiling.items()))
    if args.out:
        label = args.label or ", ".join(args.set) or "the profile's params"
        world = (World.of(params["data"]["synthetic"]["world"]).describe() if trains_on_synthetic(params)
                 else data_uri(params, "train"))
        save_result(args.out, {"label": label, "profile": args.profile, "scenes": len(scenes), "world": world,
                               "set": args.set, "threads": torch.get_num_threads(), "steps_to_target": reached,
                               "rows": rows, "mass_against_cost": ceiling}, sys.argv, params)


if __name__ == "__main__":
    main()
