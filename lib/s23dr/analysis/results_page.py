"""The Results page (the book, Results): every stage and ablation side by side, the probes
of their final checkpoints, the benchmarks' saved tables and the verdict on each claim.

`ResultsPage` holds what every section reads (the stages' recipes, their final checkpoints
and metrics logs, the baseline's figures); each method is one section, glues what the book
quotes from it and returns what the notebook shows, as `StageReport` does for a stage.
"""

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
from myst_nb import glue

from . import claims, figures, point_counts, ruling, views3d
from .evidence import gather
from .benchmark_tables import (generalisation_table, learning_speed_table, loss_choice_table, overfitting_table,
                               validation_size_table)
from .notebook import baseline_results, notebook_params
from .probes import (best_and_worst, confidence_ceiling, evaluate_checkpoint, nearest_errors, nearest_table,
                     scores_by_threshold)
from .run_summaries import all_benchmarks, arm_numbers, final_ratios, key_numbers, run_metrics, train_stage
from ..data import data_uri
from ..experiments import main_chain, point_stages, stage_files
from ..rundir import MetricsLog


class ResultsPage:
    """The Results notebook's sections. Arguments are the notebook's parameters; the pipeline
    trained every run before, so here they are found current and only read (`train_stage`)."""

    def __init__(self, profile, data=None, runs="runs", device=None, seed=None):
        self.profile, self.runs, self.device = profile, runs, device
        self.baseline = baseline_results()
        self.recipes = {name: notebook_params(path, profile, data, seed) for name, path in stage_files().items()}
        self.chain = list(main_chain())  # the stages whose first seed's final checkpoint the probes score
        glue("profile", profile, display=False)
        uris = [data_uri(self.recipes[name], "train").rsplit(":", 1)[0] for name in point_stages(profile)]
        glue("data_uri", " and ".join(uris), display=False)
        self.finals, self.trained = {}, []
        for name, recipe in self.recipes.items():
            self.finals[name], now = train_stage(recipe, runs, device)
            self.trained += now
        self.logs = {run: rows for recipe in self.recipes.values() for run, rows in run_metrics(recipe, runs).items()}
        self.numbers = {name: arm_numbers(recipe, runs) for name, recipe in self.recipes.items()}
        self.conf_threshold = self.recipes["stage3"]["eval"]["conf_threshold"]

    def train(self):
        """Which runs this page had to train, in words."""
        return f"trained now: {', '.join(run.label for run in self.trained)}" if self.trained else "nothing to train: every run was current"

    def key_numbers(self):
        """The baseline's "Key Numbers" rebuilt (`run_summaries.key_numbers`), glued as `results_key_numbers`."""
        table = key_numbers(self.recipes, self.numbers, self.baseline)
        glue("results_key_numbers", table, display=False)
        return table

    def threshold_sweep(self):
        """Each stage's scores at lower confidence thresholds (`probes.scores_by_threshold`) and
        every query's confidence, glued as `results_threshold_sweep` (the figure),
        `results_conf_threshold` and `results_highest_conf`; returns the HSS table."""
        thresholds = sorted({0.1, 0.2, 0.3, 0.4, 0.5, 0.6, self.conf_threshold})
        sweeps, confidences = {}, {}
        for name in self.chain:
            sweeps[name], confidences[name] = scores_by_threshold(self.finals[name][0], thresholds, self.device)
        glue("results_conf_threshold", self.conf_threshold, display=False)
        glue("results_highest_conf", max(float(c.max()) for c in confidences.values()), display=False)
        glue("results_threshold_sweep", figures.threshold_sweep(sweeps, confidences, self.conf_threshold),
             display=False)
        table = pd.concat({name: sweep["hss"] for name, sweep in sweeps.items()}, axis=1)
        return table.style.format(precision=3).format_index("{:.1f}").set_caption("val HSS at each confidence threshold")

    def confidence_ceiling(self):
        """Stage 1's loss's largest confidence target at each cost (`probes.confidence_ceiling`),
        glued as `results_ceiling_perfect` (at cost 0) and `results_ceiling_cost` (the highest
        cost that still passes the threshold)."""
        ceiling, cost = confidence_ceiling(self.recipes["stage1"], self.conf_threshold)
        glue("results_ceiling_perfect", float(ceiling.iloc[0]), display=False)
        glue("results_ceiling_cost", cost, display=False)
        return ceiling.to_frame().style.format(precision=3)

    def nearest_errors(self):
        """How near each stage's (and the full world's) queries come to the GT segments
        (`probes.nearest_errors`), glued as `results_nearest_errors` (the figure),
        `results_vert_thresh` and `results_nearest_{median,within}_<stage>`."""
        vert_thresh = self.recipes["stage3"]["eval"]["vert_thresh"]
        nearest = {name: nearest_errors(self.finals[name][0], self.device) for name in (*self.chain, "full_world")}
        glue("results_nearest_errors", figures.nearest_errors({name: m for name, (m, _) in nearest.items()}, vert_thresh),
             display=False)
        glue("results_vert_thresh", vert_thresh, display=False)
        table = nearest_table(nearest, vert_thresh, self.conf_threshold)
        for name, row in table.iterrows():
            for key, value in zip(("median", "within"), row.values):
                glue(f"results_nearest_{key}_{name}", float(value), display=False)
        return table.style.format(precision=3)

    def benchmark(self, name):
        """The saved runs of `benchmarks/<name>.py` as a table (`benchmark_tables`), glued as
        `results_<name>`: loss_choice, learning_speed, generalisation, overfitting or validation_size."""
        table, na_rep = {"loss_choice": (loss_choice_table, None), "learning_speed": (learning_speed_table, "not reached"),
                         "generalisation": (generalisation_table, None), "overfitting": (overfitting_table, None),
                         "validation_size": (validation_size_table, None)}[name]
        styled = table().style.format(precision=3, na_rep=na_rep)
        glue(f"results_{name}", styled, display=False)
        return styled

    def all_benchmarks(self):
        """The baseline's "All benchmarks" with our stages (`run_summaries.all_benchmarks`), glued as
        `results_benchmarks` (the frame) and `results_scores` (formatted, for the intro)."""
        table = all_benchmarks(self.recipes, self.numbers, self.baseline, self.profile)
        glue("results_benchmarks", table, display=False)
        styled = table.style.format(precision=3, na_rep="—")
        glue("results_scores", styled, display=False)
        return styled

    def curves(self, key, name, references):
        """`key` of every run against the global step (`figures.curves`), glued as `results_<name>`."""
        glue(f"results_{name}", figures.curves(self.logs, (key,), references={key: references}), display=False)

    def final_ratios(self):
        """The last val/train loss ratio of every run (`run_summaries.final_ratios`), glued as `results_ratios`."""
        table = final_ratios(self.numbers)
        glue("results_ratios", table, display=False)
        return table.style.format(precision=3, na_rep="—").set_caption("final val/train loss ratio per seed")

    def gallery(self):
        """Stage 3's (first seed's) two best and two worst validation scenes, glued as `results_gallery`."""
        scenes, frames, scores = evaluate_checkpoint(self.finals["stage3"][0], self.device)
        picks = best_and_worst(scores.scenes)
        titles = [f"{which}: {scenes[i]['order_id']}<br>HSS {scores.scenes[i].hss:.2f} "
                  f"(F1 {scores.scenes[i].f1:.2f}, IoU {scores.scenes[i].iou:.2f})" for i, which in picks]
        view = views3d.offline(views3d.wireframes([scenes[i] for i, _ in picks], [frames[i] for i, _ in picks],
                                                  titles, cols=2))
        glue("results_gallery", view, display=False)
        return view

    def verdicts(self):
        """The Results chapter's verdicts: every claim ruled on the runs' logs and their final
        checkpoints scored at the other point count (`claims`, `point_counts`). Glued: `verdict_<n>`
        and `verdict_<key>` (a claim's and a sub-claim's label), `verdict_<n>_evidence` (every part's
        figures, in full), `results_verdicts` (one row per sub-claim; `results_verdicts_summary` its
        columns for the intro), `results_point_counts` (the table at both point counts),
        `results_claim_differences` (the figure), `results_gain_split` (each attributed gain split by
        cause, per seed), `results_finetune` (the finetune arms' evaluations, mean ± sd over
        seeds) and `results_stage1_last_gain` / `_steps` (how much stage 1's HSS still rose
        between its last two evaluations: whether it had converged). Returns the table, the
        point-count table and the figure."""
        rules = ruling.rules()
        evidence = gather(self.recipes, self.runs)
        evidence.update(point_counts.rescore(self.recipes, self.runs, self.device))
        rows, parts, splits = {}, {}, {}
        for claim in claims.claims(self.recipes, self.baseline, evidence, rules):
            label, results, met, reason = ruling.rule(claim, evidence, rules)
            causes, share = ruling.gain_split(results)
            if causes:
                splits[f"claim {claim.number}: {claim.parts[0].metric} gain"] = (causes, share)
            decisive = "; ".join(
                ruling.describe(r, rules["share"]) + f" ({ruling.differs(self.recipes, r)})"
                for r in results if r["decides"])
            beside = "; ".join(ruling.describe(r) for r in results if not r["decides"])
            text = (decisive + (f". Beside it: {beside}" if beside else "")
                    + (f". Its condition holds: {reason}" if met and reason else "")
                    + ("" if met else f". Not testable here: {reason}"))
            for r in results:
                if r["decides"]:
                    rows[r["key"]] = ruling.row(r, rules, met, reason)
                    glue(f"verdict_{r['key']}", r["label"], display=False)
            parts.update({f"{r['key'] or claim.number}: {r['part']} ({r['metric']})": r for r in results})
            glue(f"verdict_{claim.number}", label, display=False)
            glue(f"verdict_{claim.number}_evidence", text, display=False)
        label, fives = claims.reproducibility(Path(self.runs) / self.profile / "reproducibility.json")
        for key, (words, what, found, text) in fives.items():
            rows[key] = {"the seed's words": words, "what we tested": what, "effect [95% interval]": "—",
                         "share [95% interval]": "—", "outcome": text, "label": found, "seeds": "—",
                         "seeds its spread needs": "—", "what would decide it": "—"}
            glue(f"verdict_{key}", found, display=False)
        glue("verdict_5", label, display=False)
        glue("verdict_5_evidence", "; ".join(f"{key}: {text}" for key, (_, _, _, text) in fives.items()), display=False)
        table = pd.DataFrame(rows).T.rename_axis("sub-claim")
        styled = table.style.set_properties(**{"text-align": "left", "white-space": "normal"})
        glue("results_verdicts", styled, display=False)
        summary = table[["the seed's words", "effect [95% interval]", "share [95% interval]", "label", "seeds",
                         "what would decide it"]]
        glue("results_verdicts_summary", summary.style.set_properties(**{"text-align": "left", "white-space": "normal"}),
             display=False)
        climb = [MetricsLog.evals(rows)[-2:] for rows in evidence["stage1"].values()]
        glue("results_stage1_last_gain", sum(b["hss"] - a["hss"] for a, b in climb) / len(climb), display=False)
        glue("results_stage1_last_steps", climb[0][1]["step"] - climb[0][0]["step"], display=False)
        both = point_counts.table(self.recipes, evidence, self.baseline).style.format(precision=3, na_rep="—")
        glue("results_point_counts", both, display=False)
        figure = figures.claim_differences(parts)
        glue("results_claim_differences", figure, display=False)
        arms = ("stage2", "control_points", *claims.high_lr_arms(self.recipes))
        finetune = {arm: evidence[arm] for arm in arms if arm in evidence}
        start = self.recipes["stage2"]["schedule"]["start_step"]
        for name, shown in (("results_gain_split", figures.gain_split(splits)),
                            ("results_finetune", figures.finetune_band(finetune, start))):
            glue(name, shown, display=False)
            plt.close(shown)  # the book shows it; the notebook shows the claims figure alone
        plt.close(figure)  # shown where the notebook displays it
        return styled, both, figure
