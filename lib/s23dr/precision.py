"""fp32 sections of a forward that may run under bf16 autocast (the book, Method: training)."""

import contextlib

import torch


def fp32(device_type):
    """Turn autocast off for a section that must stay fp32 (Fourier phases, matching, loss),
    where it is on: under no autocast this is no context at all. An `autocast(enabled=False)`
    in a step that runs without autocast still puts autocast nodes in the compiled graph, and
    AOTAutograd's cache refuses such graphs: every trainer process then traced and lowered
    each step again (some 20 s a shape on the `cpu` profile) instead of loading it."""
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
