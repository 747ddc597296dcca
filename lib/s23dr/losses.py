"""The training criterion (the book, Method: losses): transport loss + confidence loss + endpoint loss.

Built from params `loss:` as ``Criterion(**params["loss"])``. All three terms read one transport
plan from the matcher (the seed's entropic Sinkhorn plan or a one-to-one Hungarian one,
`loss.matching`), computed without gradient. For the entropic plan that loses nothing: by the
envelope (Danskin) theorem the gradient of the entropic OT value with respect to the cost is the
optimal plan itself, so ⟨plan.detach(), cost⟩ has the gradient of the OT objective (exactly so at
convergence), without backpropagating through the Sinkhorn iterations and their memory.

Normalisation: the OT and endpoint terms are per-GT-segment averages within each scene, then a
mean over scenes; the confidence term is a mean over all queries. So every term is a mean over
scenes, and DDP (which averages gradients over equal shares of the batch) trains exactly like
one process. The returned terms are unweighted; `total` carries the weights (OT weight 1).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import CHOICES
from .matcher import hungarian_plan, segment_cost, sinkhorn
from .precision import fp32

MATCHINGS = CHOICES["loss.matching"]


@dataclass(frozen=True)
class CostWeights:
    """The segment cost's weights (params loss.cost; the seed does not publish them: 1 each)."""
    midpoint: float
    direction: float
    length: float


@dataclass(frozen=True)
class SinkhornConfig:
    eps: float
    iters: int
    dustbin: float


@dataclass(frozen=True)
class TermWeight:
    weight: float


def endpoint_distance(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """[B,P,G]: mean L1 distance per endpoint between pred [B,P,2,3] and gt [B,G,2,3],
    taking the better of the two ways to pair the endpoints."""
    d = (pred[:, :, None, :, None] - gt[:, None, :, None]).abs().sum(-1)  # [B,P,G,2 pred ends,2 GT ends]
    return torch.minimum(d[..., 0, 0] + d[..., 1, 1], d[..., 0, 1] + d[..., 1, 0]) / 2


class Criterion(nn.Module):
    """forward(outputs, batch) -> dict of scalar terms: transport, conf, endpoint and aux (each when its
    weight is > 0; transport always) and total.

    transport: the cost of the plan (entropic or one-to-one, `loss.matching`) per GT segment: Σ plan·cost over matched pairs, plus
      `unmatched_cost` for each unit of GT mass left unmatched. The entropic plan leaves ~18% of each GT unmatched even
      for a perfect prediction, so that is the floor: ~0.055 at eps 0.1, dustbin 0.3.
    conf: BCE of each query's confidence logit against its matched mass, the plan's row sum
      over real GT (in [0, 1]; 0 or 1 under the one-to-one plan).
    endpoint: Σ plan · endpoint_distance per GT segment.
    aux (weight > 0; an addition, the book, Method): the sum over the earlier decoder layers'
      predictions (`outputs["layers"]`) of the same total, each matched on its own, as DETR's
      auxiliary decoding losses; added to `total` at its weight.
    """

    def __init__(self, sinkhorn: dict, conf: dict, endpoint: dict, aux: dict, matching: str, cost: dict):
        super().__init__()
        if matching not in MATCHINGS:
            raise ValueError(f"loss.matching must be one of {MATCHINGS}, got {matching!r}")
        self.matching = matching
        self.cost = CostWeights(**cost)
        self.sinkhorn = SinkhornConfig(**sinkhorn)
        #: The price of a unit of GT mass left unmatched, under either plan: loss.sinkhorn.dustbin,
        #: so that the Hungarian plan prices an unmatched GT segment as the Sinkhorn plan does.
        self.unmatched_cost = self.sinkhorn.dustbin
        self.conf = TermWeight(**conf)
        self.endpoint = TermWeight(**endpoint)
        self.aux = TermWeight(**aux)

    def match(self, outputs: dict, batch: dict):
        """(cost [B,P,G] with gradient, plan [B,P+1,G+1] in masses, without gradient): the
        entropic plan of the seed (loss.matching: sinkhorn) or a one-to-one one (hungarian).
        The Hungarian assignment minimises what the loss charges a matched pair, as DETR's
        matcher does: the segment cost plus the endpoint term at its weight."""
        pred, gt = outputs["segments"].float(), batch["gt_segments"].float()
        w = self.cost
        cost = segment_cost(pred, gt, w.midpoint, w.direction, w.length)
        if self.matching == "hungarian":
            with torch.no_grad():
                pair = cost + self.endpoint.weight * endpoint_distance(pred, gt) if self.endpoint.weight > 0 else cost
            return cost, hungarian_plan(pair, batch["gt_mask"])
        with torch.no_grad():
            cfg = self.sinkhorn
            plan = sinkhorn(cost.detach(), batch["gt_mask"], cfg.eps, cfg.iters, cfg.dustbin).exp()
        return cost, plan

    def forward(self, outputs: dict, batch: dict) -> dict:
        terms = self.set_terms(outputs, batch)
        if self.aux.weight > 0:
            terms["aux"] = sum(self.set_terms(layer, batch)["total"] for layer in outputs["layers"])
            terms["total"] = terms["total"] + self.aux.weight * terms["aux"]
        return terms

    def set_terms(self, outputs: dict, batch: dict) -> dict:
        """The terms of one set of predictions (the last decoder layer's, or an earlier one's)."""
        pred = outputs["segments"]
        with fp32(pred.device.type):
            gt_mask = batch["gt_mask"]
            cost, plan = self.match(outputs, batch)
            P = cost.shape[1]
            matched = plan[:, :P, :-1] * gt_mask[:, None, :]  # [B,P,G] mass of real pairs
            scene_weight = 1 / (len(gt_mask) * gt_mask.sum(-1).clamp_min(1))  # [B]: 1 / (B · n_gt)
            unmatched_gt = (plan[:, P, :-1] * gt_mask).sum(-1)
            terms = {"transport": ((matched * cost).sum((1, 2)) + self.unmatched_cost * unmatched_gt) @ scene_weight}
            total = terms["transport"]

            if self.conf.weight > 0:  # config.check: a model without confidence trains at weight 0
                target = matched.sum(-1).clamp(0, 1)
                terms["conf"] = F.binary_cross_entropy_with_logits(outputs["conf_logits"].float(), target)
                total = total + self.conf.weight * terms["conf"]

            if self.endpoint.weight > 0:
                dist = endpoint_distance(pred.float(), batch["gt_segments"].float())
                terms["endpoint"] = (matched * dist).sum((1, 2)) @ scene_weight
                total = total + self.endpoint.weight * terms["endpoint"]

            terms["total"] = total
        return terms
