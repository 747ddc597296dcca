"""The data layer: every loader form, splits, errors, validation, bad samples, batches, augmentation."""

import logging
import re
import socket

import datasets
import numpy as np
import pyarrow as pa
import pytest
import torch

from s23dr import data
from s23dr.data import (SceneDataset, check_scenes, collate, open_dataset, read_bad_samples, split_uri, to_device,
                        to_scene, validate_scene)
from s23dr.schema import ARRAY_FIELDS, MAX_GT_EDGES, hf_features


@pytest.fixture(autouse=True)
def hf_cache(tmp_path, monkeypatch):
    """Keep the parquet builder's cache out of the home directory."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "hf_cache" / "downloads")


@pytest.fixture
def splits(make_scene):
    """Two splits of scenes with different point and edge counts."""
    return {"train": [make_scene(f"train{i}", n_valid=40 + i, n_edges=3 + i, seed=i) for i in range(3)],
            "validation": [make_scene(f"val{i}", n_valid=50 + i, n_edges=5 + i, seed=10 + i) for i in range(2)]}


def as_dataset(scenes):
    return datasets.Dataset.from_list(scenes, features=hf_features())


def write_saved(root, splits):
    datasets.DatasetDict({name: as_dataset(scenes) for name, scenes in splits.items()}).save_to_disk(str(root))


def write_parquet_prefix(root, splits):
    for name, scenes in splits.items():
        as_dataset(scenes).to_parquet(str(root / f"{name}-00000-of-00001.parquet"))


def write_parquet_dirs(root, splits):
    for name, scenes in splits.items():
        as_dataset(scenes).to_parquet(str(root / name / "part0.parquet"))


def write_npz_dirs(root, splits):
    for name, scenes in splits.items():
        write_npz_files(root / name, scenes)


def write_npz_files(folder, scenes, store_id=False):
    folder.mkdir(parents=True, exist_ok=True)
    for scene in scenes:
        fields = {k: v for k, v in scene.items() if k != "order_id" or store_id}
        np.savez(folder / f"{scene['order_id']}.npz", **fields)


WRITERS = {"save_to_disk": write_saved, "parquet_prefix": write_parquet_prefix,
           "parquet_dirs": write_parquet_dirs, "npz": write_npz_dirs}


@pytest.fixture(params=list(WRITERS))
def written(request, tmp_path, splits):
    """(root, splits) with the splits written in each loader form."""
    root = tmp_path / "data"
    root.mkdir()
    WRITERS[request.param](root, splits)
    return root, splits


def assert_same_scene(got, want):
    assert got["order_id"] == want["order_id"] and isinstance(got["order_id"], str)
    for name, (dtype, _) in ARRAY_FIELDS.items():
        assert got[name].dtype == dtype, name
        assert got[name].shape == np.shape(want[name]), name
        np.testing.assert_array_equal(got[name], want[name], err_msg=name)


# --------------------------------------------------------------------------- loader forms


def test_every_form_reads_the_same_scenes_with_schema_dtypes(written):
    root, splits = written
    scenes = open_dataset(f"{root}:train")
    assert len(scenes) == 3
    assert scenes.order_ids == [s["order_id"] for s in splits["train"]]
    for got, want in zip(scenes, splits["train"]):
        assert_same_scene(got, want)


def test_arrow_rows_read_right_through_chunks_slices_and_a_selection(tmp_path, make_scene):
    """Rows are read from the arrow columns unwrapped once (data._ArrowRows), not from the
    Dataset's formatter: a multi-chunk table, sliced chunks and a select()ed view read alike."""
    scenes = [make_scene(f"s{i}", seed=i, n_edges=i + 1) for i in range(6)]
    dataset = datasets.concatenate_datasets([as_dataset(scenes[:2]), as_dataset(scenes[2:]).select(range(4))])
    dataset.save_to_disk(str(tmp_path / "saved"))
    for got, want in zip(open_dataset(tmp_path / "saved"), scenes):
        assert_same_scene(got, want)
    table = pa.concat_tables([dataset.data.table.slice(1, 3), dataset.data.table.slice(4, 2)])
    rows = data._ArrowRows(datasets.Dataset(table).select([4, 0, 2]), "x")
    for i, want in enumerate([scenes[5], scenes[1], scenes[3]]):
        assert_same_scene(to_scene(rows[i], rows.where(i)), want)


def test_split_suffix_picks_the_split_and_train_is_the_default(written):
    root, splits = written
    assert open_dataset(f"{root}:validation").order_ids == ["val0", "val1"]
    assert open_dataset(root).order_ids == ["train0", "train1", "train2"]


def test_unknown_split_names_the_available_ones(written):
    root, _ = written
    with pytest.raises(ValueError, match="unknown split 'test'; available: train, validation"):
        open_dataset(f"{root}:test")


def test_datasets_without_splits_open_without_suffix_and_refuse_one(tmp_path, splits):
    scenes = splits["train"] + splits["validation"]
    as_dataset(scenes).save_to_disk(str(tmp_path / "saved"))
    write_npz_files(tmp_path / "flat", scenes)
    for root in (tmp_path / "saved", tmp_path / "flat"):
        assert open_dataset(root).order_ids == [s["order_id"] for s in scenes]
        with pytest.raises(ValueError, match="no splits; leave out ':train'"):
            open_dataset(f"{root}:train")


def test_npz_prefers_a_stored_order_id_to_the_file_stem(tmp_path, make_scene):
    scene = make_scene("stored-id")
    write_npz_files(tmp_path, [scene], store_id=True)
    (tmp_path / "stored-id.npz").rename(tmp_path / "file-stem.npz")
    assert open_dataset(tmp_path).order_ids == ["stored-id"]
    assert_same_scene(open_dataset(tmp_path)[0], scene)


def test_only_a_trailing_name_without_slashes_is_a_split(tmp_path, splits):
    hub = "hf://usm3d/s23dr-2026-sampled_4096_v2"
    assert split_uri(f"{hub}:train") == (hub, "train")
    assert split_uri(hub) == (hub, None)
    assert split_uri("runs:v1/data") == ("runs:v1/data", None)
    root = tmp_path / "runs:v1" / "data"
    root.mkdir(parents=True)
    write_saved(root, splits)
    assert open_dataset(f"{root}:validation").order_ids == ["val0", "val1"]
    assert open_dataset(root).order_ids == ["train0", "train1", "train2"]
    existing = tmp_path / "snapshot:v2"  # the whole string names a path: no split
    write_saved(existing, splits)
    assert open_dataset(existing).order_ids == ["train0", "train1", "train2"]


class Reachable:
    """What socket.create_connection returns where the hub answers."""

    def close(self):
        pass


def test_hub_uri_goes_through_load_dataset(monkeypatch, splits):
    calls = []
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: Reachable())

    def fake_load_dataset(repo, split):
        calls.append((repo, split))
        return as_dataset(splits[split])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    scenes = open_dataset("hf://usm3d/s23dr-2026-sampled_4096_v2:validation")
    for got, want in zip(scenes, splits["validation"]):
        assert_same_scene(got, want)
    open_dataset("hf://usm3d/s23dr-2026-sampled_4096_v2")
    repo = "usm3d/s23dr-2026-sampled_4096_v2"
    assert calls == [(repo, "validation"), (repo, "train")]


def test_unreachable_hub_names_the_uri_and_the_synthetic_default(monkeypatch):
    def offline(repo, split):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # declared offline: the cache, no probe
    uri = "hf://usm3d/s23dr-2026-sampled_4096_v2:train"
    with pytest.raises(FileNotFoundError, match=re.escape(uri) + ".*Couldn't reach.*python -m s23dr.pipeline data --profile cpu"):
        open_dataset(uri)


def test_a_hub_uri_without_network_fails_at_once_after_one_probe(monkeypatch):
    probes = []

    def no_network(address, timeout):
        probes.append(address)
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: pytest.fail("load_dataset retries offline"))
    uri = "hf://usm3d/s23dr-2026-sampled_4096_v2:train"
    with pytest.raises(FileNotFoundError, match=rf"^{re.escape(uri)}: the Hugging Face hub \(huggingface.co\) cannot be "
                                                r"reached \(\[Errno 101\] Network is unreachable\); with the dataset in "
                                                r"the local cache, set HF_HUB_OFFLINE=1\. Without network") as err:
        open_dataset(uri)
    assert probes == [("huggingface.co", 443)] and "\n" not in str(err.value)


def test_missing_path_names_the_uri_and_the_synthetic_default(tmp_path):
    uri = f"{tmp_path}/nowhere:train"
    with pytest.raises(FileNotFoundError, match=re.escape(uri) + ".*python -m s23dr.pipeline data --profile cpu"):
        open_dataset(uri)


@pytest.mark.parametrize("form", ["npz", "save_to_disk"])
def test_a_duplicate_order_id_is_refused_naming_it(tmp_path, make_scene, form):
    scenes = [make_scene("a"), make_scene("b", seed=1), make_scene("b", seed=2)]
    if form == "npz":
        (tmp_path / "data").mkdir()
        for i, scene in enumerate(scenes):
            np.savez(tmp_path / "data" / f"file{i}.npz", **scene)  # the stored order_id names the scene
        where = re.escape(f"({tmp_path}/data/file1.npz and {tmp_path}/data/file2.npz)")
    else:
        as_dataset(scenes).save_to_disk(str(tmp_path / "data"))
        where = r"\(.* row 1 \(order_id b\) and .* row 2 \(order_id b\)\)"
    with pytest.raises(ValueError, match=rf"data: order_id 'b' names more than one scene {where}$"):
        open_dataset(tmp_path / "data")


def test_an_empty_saved_split_is_named_and_the_others_still_open(tmp_path, splits):
    saved = {name: as_dataset(scenes) for name, scenes in splits.items()}
    datasets.DatasetDict({**saved, "test": saved["train"].select([])}).save_to_disk(str(tmp_path))
    assert open_dataset(f"{tmp_path}:validation").order_ids == ["val0", "val1"]
    with pytest.raises(ValueError, match=rf"^{re.escape(str(tmp_path))}:test: {re.escape(str(tmp_path / 'test'))} "
                                         r"holds no scenes \(an empty split: no .arrow files\)$"):
        open_dataset(f"{tmp_path}:test")


def test_a_folder_without_data_is_refused(tmp_path):
    with pytest.raises(ValueError, match="holds no dataset"):
        open_dataset(tmp_path)


def truncate(data):
    return data[:len(data) // 2]


def flip_a_byte_of_visible_id(data):
    data = bytearray(data)
    data[data.index(b"visible_id.npy") + 200] ^= 0xFF  # inside the member's compressed bytes
    return bytes(data)


@pytest.mark.parametrize("damage, message", [
    (truncate, r"not an \.npz file \(no zip archive"),
    (flip_a_byte_of_visible_id, r"corrupt \.npz file \(BadZipFile: Bad CRC-32 for file 'visible_id.npy'\)"),
    (lambda data: np.random.default_rng(0).bytes(len(data)), r"not an \.npz file"),
])
def test_a_damaged_npz_file_fails_when_opened_naming_it(tmp_path, splits, damage, message):
    write_npz_files(tmp_path, splits["train"])
    file = tmp_path / "train1.npz"
    file.write_bytes(damage(file.read_bytes()))
    with pytest.raises(ValueError, match=re.escape(str(file)) + ": " + message):
        open_dataset(tmp_path)


@pytest.mark.parametrize("form", ["save_to_disk", "parquet_dirs"])
def test_a_truncated_arrow_or_parquet_file_fails_naming_it(tmp_path, splits, form):
    WRITERS[form](tmp_path, splits)
    (file,) = tmp_path.glob("train/*.arrow") if form == "save_to_disk" else tmp_path.glob("train/*.parquet")
    file.write_bytes(truncate(file.read_bytes()))
    with pytest.raises(ValueError, match=re.escape(f"{tmp_path}:train: {file} is truncated or corrupt")):
        open_dataset(f"{tmp_path}:train")


# --------------------------------------------------------------------------- one row -> one scene


def test_missing_field_names_the_field_and_the_file(tmp_path, make_scene):
    scene = make_scene("no-edges-field")
    del scene["gt_edges"]
    write_npz_files(tmp_path, [scene])
    file = re.escape(str(tmp_path / "no-edges-field.npz"))
    with pytest.raises(ValueError, match=file + ": missing field 'gt_edges'"):
        open_dataset(tmp_path)
    as_dataset([make_scene("a")]).remove_columns("gt_segments").save_to_disk(str(tmp_path / "saved"))
    saved = f"{tmp_path / 'saved'} row 0 (order_id a)"
    with pytest.raises(ValueError, match=re.escape(f"{saved}: missing field 'gt_segments' (ground truth")):
        open_dataset(tmp_path / "saved")


def test_wrong_shape_names_the_field_and_both_shapes(make_scene):
    scene = make_scene("s", n_points=64)
    message = "here: field 'xyz_norm' should have shape (?, 3), found (64, 2)"
    with pytest.raises(ValueError, match=re.escape(message)):
        to_scene({**scene, "xyz_norm": scene["xyz_norm"][:, :2]}, "here")
    with pytest.raises(ValueError, match=re.escape("field 'class_id' should have shape (64,), found (63,)")):
        to_scene({**scene, "class_id": scene["class_id"][:63]}, "here")


def test_to_scene_converts_lists_flat_arrays_and_other_int_widths(make_scene):
    scene = make_scene("s")
    as_lists = {name: np.asarray(value).tolist() for name, value in scene.items()}
    flat = {name: np.asarray(value).ravel() if name != "order_id" else value for name, value in scene.items()}
    as_numpy_format = as_dataset([scene]).with_format("numpy")[0]  # ints widened to int64
    assert as_numpy_format["class_id"].dtype == np.int64
    for row in (as_lists, flat, as_numpy_format):
        assert_same_scene(to_scene(row, "here"), scene)


def test_to_scene_refuses_conversions_that_lose_values(make_scene):
    scene = make_scene("s")
    with pytest.raises(ValueError, match="field 'class_id': values 0..300 do not fit uint8"):
        to_scene({**scene, "class_id": np.where(scene["class_id"] > 5, 300, 0)}, "here")
    with pytest.raises(ValueError, match="field 'gt_edges' should hold integers"):
        to_scene({**scene, "gt_edges": scene["gt_edges"] + 0.5}, "here")


# --------------------------------------------------------------------------- validation


def no_edges(s):
    for name in ("gt_edges", "gt_segments", "gt_edge_classes"):
        s[name] = s[name][:0]


def set_value(name, index, value):
    def mutate(s):
        s[name] = np.array(s[name])
        s[name][index] = value
    return mutate


BAD = {  # name -> (mutation, fragment of the message)
    "no_edges": (no_edges, "no GT edges"),
    "nan_xyz": (set_value("xyz_norm", (3, 1), np.nan), "NaN or inf.*xyz_norm"),
    "inf_center": (set_value("center", 0, np.inf), "NaN or inf.*center"),
    "nan_vertices": (set_value("gt_vertices", (0, 2), np.nan), "NaN or inf.*gt_vertices"),
    "nan_segments": (set_value("gt_segments", (1, 0, 2), np.nan), "NaN or inf.*gt_segments"),
    "nan_scale": (lambda s: s.update(scale=np.float32(np.nan)), "NaN or inf.*scale"),
    "nan_vote_frac": (set_value("vote_frac", 2, np.nan), "NaN or inf.*vote_frac"),
    "huge_vertices": (set_value("gt_vertices", (0, 0), 1e30), r"values beyond ±1e\+06 in gt_vertices \(up to 1e\+30\)"),
    "huge_xyz": (set_value("xyz_norm", (3, 1), -1e30), r"values beyond ±1e\+06 in xyz_norm"),
    "zero_scale": (lambda s: s.update(scale=np.float32(0)), "scale must be positive"),
    "index_too_big": (set_value("gt_edges", (0, 1), 7), "out of range for 7 gt_vertices"),
    "negative_index": (set_value("gt_edges", (0, 0), -1), "out of range"),
    "segment_count": (lambda s: s.update(gt_segments=s["gt_segments"][:-1]),
                      "gt_segments has 5 entries but gt_edges has 6"),
    "no_valid_points": (lambda s: s.update(mask=np.zeros_like(s["mask"])), "no valid points"),
    "class_id": (set_value("class_id", 0, 13), "class_id 13 out of range"),
}


@pytest.fixture
def bad_scenes(make_scene):
    """{order_id: (scene, message fragment)}: every kind of invalid scene, plus one with 65 edges."""
    out = {}
    for i, (name, (mutate, fragment)) in enumerate(BAD.items()):
        scene = make_scene(f"bad-{name}", n_edges=6, seed=100 + i)
        mutate(scene)
        out[scene["order_id"]] = (scene, fragment)
    out["bad-too_many"] = (make_scene("bad-too_many", n_edges=MAX_GT_EDGES + 1),
                           "65 GT edges, more than MAX_GT_EDGES=64")
    return out


def test_validate_scene_rejects_each_problem_naming_the_order_id(bad_scenes, make_scene):
    validate_scene(to_scene(make_scene("good"), "here"))
    for order_id, (scene, fragment) in bad_scenes.items():
        with pytest.raises(ValueError, match=f"scene '{order_id}': .*{fragment}"):
            validate_scene(to_scene(scene, "here"))


def test_invalid_scenes_raise_when_read_or_checked_or_are_dropped_with_a_count(tmp_path, bad_scenes, make_scene,
                                                                              caplog):
    good = [make_scene(f"good{i}", seed=i) for i in range(3)]
    write_npz_files(tmp_path, good + [scene for scene, _ in bad_scenes.values()])
    scenes = open_dataset(tmp_path)
    assert len(scenes) == 3 + len(bad_scenes)
    for i, order_id in enumerate(scenes.order_ids):
        if order_id in bad_scenes:
            with pytest.raises(ValueError, match=f"scene '{order_id}'"):
                scenes[i]
    assert scenes.check_all().keys() == bad_scenes.keys()

    first = sorted(bad_scenes)[:5]  # npz files are read in name order
    with pytest.raises(ValueError, match=re.escape(f"{len(bad_scenes)} of {len(scenes)} scenes in {tmp_path} are "
                                                   f"invalid: {', '.join(first)}, ...); do this")):
        check_scenes(scenes, hint="; do this")
    with caplog.at_level(logging.WARNING, logger="s23dr.data"):
        kept = check_scenes(scenes, drop=True)
    assert kept.order_ids == ["good0", "good1", "good2"]
    assert kept.skipped.keys() == bad_scenes.keys()
    assert f"left out {len(bad_scenes)} invalid scenes ({', '.join(first)}, ...)" in caplog.text
    for order_id, (_, fragment) in bad_scenes.items():
        assert re.search(fragment, kept.skipped[order_id])
    assert check_scenes(kept).order_ids == kept.order_ids


# --------------------------------------------------------------------------- bad-sample lists


@pytest.mark.parametrize("final_newline", [False, True])
def test_bad_sample_list_counts_every_id_with_or_without_final_newline(tmp_path, final_newline):
    ids = [f"{i:011x}" for i in range(156)]
    path = tmp_path / "bad_samples.txt"
    path.write_text("\n".join(ids) + ("\n" if final_newline else ""))
    assert path.read_text().count("\n") == 155 + final_newline  # what `wc -l` reports
    assert read_bad_samples(path) == set(ids)


def test_bad_sample_list_ignores_blank_lines_and_names_a_missing_file(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_text("\n a1 \n\n\nb2\n\n")
    assert read_bad_samples(path) == {"a1", "b2"}
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "missing.txt"))):
        read_bad_samples(tmp_path / "missing.txt")


def test_bad_samples_are_removed_and_counted(tmp_path, splits, caplog):
    write_saved(tmp_path, splits)
    path = tmp_path / "bad_samples.txt"
    path.write_text("train0\ntrain2\nnot-in-this-split")
    with caplog.at_level(logging.INFO, logger="s23dr.data"):
        scenes = open_dataset(f"{tmp_path}:train", bad_samples=path)
    assert scenes.order_ids == ["train1"]
    assert scenes.skipped == {"train0": "listed as a bad sample", "train2": "listed as a bad sample"}
    assert_same_scene(scenes[0], splits["train"][1])
    assert "removed 2 of 3 listed bad samples, 1 scenes left" in caplog.text
    assert open_dataset(f"{tmp_path}:train", bad_samples={"train1"}).order_ids == ["train0", "train2"]


# --------------------------------------------------------------------------- batches


def test_collate_follows_the_batch_contract(make_scene):
    scenes = [make_scene("a", n_points=64, n_valid=40, n_edges=3),
              make_scene("b", n_points=64, n_valid=64, n_edges=64),
              make_scene("c", n_points=48, n_valid=30, n_edges=10)]  # fewer rows than n_points
    dataset = SceneDataset(scenes, n_points=64)
    batch = collate([dataset[i] for i in range(3)])
    contract = {"xyz_norm": ((3, 64, 3), torch.float32), "class_id": ((3, 64), torch.uint8),
                "source": ((3, 64), torch.uint8), "behind": ((3, 64), torch.int16),
                "n_views_voted": ((3, 64), torch.uint8), "vote_frac": ((3, 64), torch.float32),
                "mask": ((3, 64), torch.bool), "gt_segments": ((3, 64, 2, 3), torch.float32),
                "gt_mask": ((3, 64), torch.bool), "center": ((3, 3), torch.float32),
                "scale": ((3,), torch.float32), "aug": ((3, 3, 3), torch.float32)}
    assert set(batch) == set(contract) | {"order_id", "padded"}
    for name, (shape, dtype) in contract.items():
        assert (tuple(batch[name].shape), batch[name].dtype) == (shape, dtype), name
    assert batch["order_id"] == ["a", "b", "c"] and batch["padded"]
    assert not collate([dataset[1]])["padded"]  # b fills its 64 rows
    assert batch["mask"].sum(1).tolist() == [40, 64, 30]
    assert batch["gt_mask"].sum(1).tolist() == [3, 64, 10]
    assert (batch["gt_segments"][0, 3:] == 0).all()
    c = scenes[2]
    np.testing.assert_array_equal(batch["xyz_norm"][2, :30].numpy(), c["xyz_norm"][:30])
    last_valid = np.repeat(c["xyz_norm"][29:30], 34, axis=0)
    np.testing.assert_array_equal(batch["xyz_norm"][2, 30:].numpy(), last_valid)
    np.testing.assert_array_equal(batch["gt_segments"][2, :10].numpy(), c["gt_segments"])
    np.testing.assert_array_equal(batch["class_id"][2, :30].numpy(), c["class_id"][:30])
    np.testing.assert_array_equal(batch["scale"].numpy(), [s["scale"] for s in scenes])
    assert (batch["aug"] == torch.eye(3)).all()


def test_valid_points_beyond_n_points_fail_clearly(make_scene):
    dataset = SceneDataset([make_scene("crowded", n_points=64, n_valid=40)], n_points=32)
    with pytest.raises(ValueError, match="'crowded' has 40 valid points, more than n_points=32"):
        dataset[0]


def test_checked_scenes_are_not_validated_again_at_each_read(tmp_path, make_scene, monkeypatch):
    write_npz_files(tmp_path, [make_scene("a"), make_scene("b")])
    checked = check_scenes(open_dataset(tmp_path))
    monkeypatch.setattr(data, "validate_scene", lambda scene: pytest.fail("validated again"))
    assert [scene["order_id"] for scene in checked] == ["a", "b"]
    assert [scene["order_id"] for scene in checked.without({"a": "dropped"})] == ["b"]


def test_check_scenes_refuses_scenes_beyond_the_params_point_count_before_training(tmp_path, make_scene):
    write_npz_files(tmp_path, [make_scene("fits", n_valid=30), make_scene("crowded", n_points=64, n_valid=40)])
    scenes = open_dataset(tmp_path)
    checked = check_scenes(scenes)
    assert checked.order_ids == scenes.order_ids and checked.checked and not scenes.checked
    with pytest.raises(ValueError, match=r"^scene 'crowded' has 40 valid points, more than n_points=32: .*"
                                         rf"\(1 of 2 scenes in {re.escape(str(tmp_path))} are invalid: crowded\)$"):
        check_scenes(scenes, n_points=32)


def test_to_device_moves_tensors_and_keeps_order_ids(make_scene):
    batch = collate([SceneDataset([make_scene("a")], n_points=64)[0]])
    moved = to_device(batch, torch.device("meta"))
    assert all(moved[name].device.type == "meta" for name in moved if name not in ("order_id", "padded"))
    assert moved["order_id"] == ["a"] and moved["padded"] is True


# --------------------------------------------------------------------------- augmentation


def augmented(scene, augment, seed=0, epoch=0, index=0, n_points=64):
    return SceneDataset([scene] * (index + 1), n_points, augment, seed)[(epoch, index)]


BOTH = {"rotate": True, "flip": True}


def test_points_and_gt_move_together(make_scene):
    scene = make_scene("s", n_valid=48)
    scene["xyz_norm"][5] = scene["gt_segments"][2, 0]  # a point on a GT endpoint
    for epoch in range(8):
        item = augmented(scene, BOTH, epoch=epoch)
        np.testing.assert_allclose(item["xyz_norm"][5], item["gt_segments"][2, 0], atol=1e-6)
        np.testing.assert_allclose(item["xyz_norm"] @ item["aug"], scene["xyz_norm"], atol=1e-6)
        np.testing.assert_allclose(item["gt_segments"][:6] @ item["aug"], scene["gt_segments"], atol=1e-6)


def test_augmentation_depends_only_on_seed_epoch_and_index(make_scene):
    scene = make_scene("s")
    first = augmented(scene, BOTH, seed=7, epoch=3, index=2)["aug"]
    np.testing.assert_array_equal(augmented(scene, BOTH, seed=7, epoch=3, index=2)["aug"], first)
    for other in ({"seed": 8, "epoch": 3, "index": 2}, {"seed": 7, "epoch": 4, "index": 2},
                  {"seed": 7, "epoch": 3, "index": 1}):
        assert not np.allclose(augmented(scene, BOTH, **other)["aug"], first), other


def test_batches_do_not_depend_on_the_worker_count(make_scene):
    dataset = SceneDataset([make_scene(f"s{i}", seed=i) for i in range(8)], 64, BOTH, seed=3)
    order = [[(2, 5), (2, 1), (3, 0), (3, 7)], [(3, 2), (3, 3), (2, 4), (2, 6)]]  # items of two epochs

    def batches(workers):
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=order, collate_fn=collate, num_workers=workers)
        return [b["xyz_norm"] for b in loader]

    for single, parallel in zip(batches(0), batches(2)):
        assert torch.equal(single, parallel)


def test_rotation_is_about_y_only(make_scene):
    scene = make_scene("s")
    angles = set()
    for epoch in range(8):
        item = augmented(scene, {"rotate": True}, epoch=epoch)
        np.testing.assert_array_equal(item["xyz_norm"][:, 1], scene["xyz_norm"][:, 1])
        np.testing.assert_allclose(item["aug"] @ item["aug"].T, np.eye(3), atol=1e-6)
        assert np.linalg.det(item["aug"]) == pytest.approx(1.0, abs=1e-5)
        assert np.array_equal(item["aug"][1], [0, 1, 0]) and np.array_equal(item["aug"][:, 1], [0, 1, 0])
        angles.add(round(float(np.arctan2(item["aug"][0, 2], item["aug"][0, 0])), 4))
    assert len(angles) == 8


def test_flip_is_a_mirror_of_x(make_scene):
    scene = make_scene("s")
    dets = []
    for epoch in range(16):
        item = augmented(scene, {"flip": True}, epoch=epoch)
        dets.append(round(float(np.linalg.det(item["aug"]))))
        expected = np.diag([dets[-1], 1, 1]).astype(np.float32)
        np.testing.assert_array_equal(item["aug"], expected)
        np.testing.assert_array_equal(item["xyz_norm"], scene["xyz_norm"] * expected.diagonal())
    assert set(dets) == {-1, 1}
    with_rotation = [round(float(np.linalg.det(augmented(scene, BOTH, epoch=e)["aug"]))) for e in range(16)]
    assert with_rotation == dets  # the mirror draw does not depend on whether rotation is on


def test_unknown_augment_key_is_refused(make_scene):
    with pytest.raises(ValueError, match=r"unknown keys \['rot'\]"):
        SceneDataset([make_scene("s")], 64, {"rot": True})
