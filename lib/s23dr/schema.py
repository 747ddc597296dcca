"""The sampled-dataset schema (the book, Introduction: the data): one place for field
names, dtypes and label names.

Every reader, writer and validator in the package refers to these tables, so a
renamed field or a changed dtype is a one-line change here.
"""

import numpy as np

#: Per-point fields: name -> (dtype, trailing shape after the point axis S).
POINT_FIELDS = {
    "xyz_norm": (np.float32, (3,)),
    "class_id": (np.uint8, ()),
    "source": (np.uint8, ()),
    "mask": (np.bool_, ()),
    "behind": (np.int16, ()),
    "visible_src": (np.uint8, ()),
    "visible_id": (np.int16, ()),
    "n_views_voted": (np.uint8, ()),
    "vote_frac": (np.float32, ()),
}

#: Per-scene fields: name -> (dtype, shape with None for a variable axis).
SCENE_FIELDS = {
    "center": (np.float32, (3,)),
    "scale": (np.float32, ()),
    "gt_vertices": (np.float32, (None, 3)),
    "gt_edges": (np.int64, (None, 2)),
    "gt_segments": (np.float32, (None, 2, 3)),
    "gt_edge_classes": (np.int64, (None,)),
}

#: Every array field of a scene, in a stable order.
ARRAY_FIELDS = {**POINT_FIELDS, **SCENE_FIELDS}

#: The ground truth: training and evaluation need it, prediction does not (test scenes lack it).
GT_FIELDS = ("gt_vertices", "gt_edges", "gt_segments", "gt_edge_classes")

#: The 13 point classes (``class_id``).
POINT_CLASSES = (
    "apex", "eave_end_point", "flashing_end_point", "rake", "ridge", "eave", "hip",
    "valley", "flashing", "step_flashing", "roof", "other_house", "non_house",
)
POINT_CLASS = {name: i for i, name in enumerate(POINT_CLASSES)}

#: The 10 GT edge classes (``gt_edge_classes``).
EDGE_CLASSES = (
    "cornice_return", "cornice_strip", "eave", "flashing", "hip", "rake", "ridge",
    "step_flashing", "transition_line", "valley",
)
EDGE_CLASS = {name: i for i, name in enumerate(EDGE_CLASSES)}

#: ``source`` values: a point of the sparse (SfM) cloud or of a depth map.
SOURCE_SPARSE, SOURCE_DEPTH = 0, 1
NUM_SOURCES = 2

#: ``behind`` holds a gestalt class id in 0..27; the featurizer reserves one more slot.
NUM_BEHIND_CLASSES = 28

#: Scenes with more GT edges than this are dropped: the seed's filter, as many as its model
#: predicts segments (the recipe's `model.segments`; a profile may predict fewer, as `cpu` does).
MAX_GT_EDGES = 64


def hf_features():
    """The ``datasets.Features`` that our writers use (arrays keep their dtypes and shapes)."""
    from datasets import Array2D, Array3D, Features, Sequence, Value

    def feature(dtype, shape):
        name = np.dtype(dtype).name
        if len(shape) == 0:
            return Value(name)
        if len(shape) == 1:
            return Sequence(Value(name))
        array = Array2D if len(shape) == 2 else Array3D
        return array(shape=tuple(shape), dtype=name)

    columns = {"order_id": Value("string")}
    for name, (dtype, trailing) in POINT_FIELDS.items():
        columns[name] = feature(dtype, (None, *trailing))
    for name, (dtype, shape) in SCENE_FIELDS.items():
        columns[name] = feature(dtype, shape)
    return Features(columns)
