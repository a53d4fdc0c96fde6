"""Each layout's loader on a tiny fake tree: files, classes, labels; each bad input's error."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emaseg.config import get_config
from emaseg.classes import voc_palette
from emaseg.data.datasets import DatasetError, build_dataset
import fake_data

torch.set_num_threads(1)


def data_cfg(dataset: str):
    cfg = get_config("emanet_r18w8-d8_128x256_synthetic")
    cfg.data.dataset = dataset
    return cfg.data


def test_cityscapes_and_synthetic(tmp_path):
    labels = fake_data.write_cityscapes(tmp_path, "train", 3)
    fake_data.write_cityscapes(tmp_path, "val", 1, city="frankfurt")
    for name in ("cityscapes", "synthetic"):
        ds = build_dataset(data_cfg(name), tmp_path, "train", train=False)
        assert len(ds) == 3 and ds.num_classes == 19 and ds.classes[13] == "car"
        assert ds.palette[0] == (128, 64, 128)
        image, label = ds[1]
        assert image.shape == (128, 256, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(label, labels[1])
    val = build_dataset(data_cfg("cityscapes"), tmp_path, "val", train=False)
    assert len(val) == 1 and "frankfurt" in val.samples[0][0]


def test_voc12aug(tmp_path):
    masks = fake_data.write_voc(tmp_path)
    train = build_dataset(data_cfg("voc12aug"), tmp_path, "train", train=False)
    # The train split is trainaug.txt over SegmentationClassAug.
    assert [p[0].rsplit("/", 1)[1] for p in train.samples] == ["2007_000001.jpg", "2007_000002.jpg", "2008_000010.jpg"]
    assert all("SegmentationClassAug" in p[1] for p in train.samples)
    val = build_dataset(data_cfg("voc12aug"), tmp_path, "val", train=False)
    assert val.num_classes == 21 and val.classes[15] == "person"
    assert val.palette[:3] == [(0, 0, 0), (128, 0, 0), (0, 128, 0)] and val.palette == voc_palette(21)
    # SegmentationClass holds palette PNGs: the loader must return indices, not colours.
    _, label = val[0]
    np.testing.assert_array_equal(label, masks["2007_000003"])


def test_voc_mmseg_aug_layout(tmp_path):
    fake_data.write_voc(tmp_path)
    sets = tmp_path / "ImageSets" / "Segmentation"
    (sets / "trainaug.txt").rename(sets / "aug.txt")
    train = build_dataset(data_cfg("voc12aug"), tmp_path, "train", train=False)
    assert len(train) == 2 + 3  # train.txt (SegmentationClass) + aug.txt (SegmentationClassAug), as mmseg concatenates


def test_pascal_context_reduces_zero_label(tmp_path):
    masks = fake_data.write_pascal_context(tmp_path)
    ds = build_dataset(data_cfg("pascal_context"), tmp_path, "val", train=False)
    assert ds.num_classes == 59 and ds.classes[0] == "aeroplane"
    _, label = ds[0]
    raw = masks["2008_000007"]
    expected = np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    np.testing.assert_array_equal(label, expected)
    assert set(np.unique(label)) == {255, 0, 58, 29}
    assert len(build_dataset(data_cfg("pascal_context"), tmp_path, "train", train=False)) == 2


def test_coco_stuff(tmp_path):
    masks = fake_data.write_coco_stuff(tmp_path)
    ds = build_dataset(data_cfg("coco_stuff164k"), tmp_path, "val", train=False)
    assert ds.num_classes == 171 and ds.classes[170] == "wood"
    np.testing.assert_array_equal(ds[0][1], masks["000000000139"])
    assert len(build_dataset(data_cfg("coco_stuff164k"), tmp_path, "train", train=False)) == 2


def test_ade20k_reduces_zero_label(tmp_path):
    masks = fake_data.write_ade20k(tmp_path)
    ds = build_dataset(data_cfg("ade20k"), tmp_path, "train", train=False)
    assert ds.num_classes == 150 and ds.classes[:3] == ["wall", "building", "sky"]
    _, label = ds[0]
    raw = masks["ADE_train_00000001"]  # values 0 (other), 1, 150, 7
    np.testing.assert_array_equal(label[raw == 0], 255)
    np.testing.assert_array_equal(label[raw == 150], 149)
    np.testing.assert_array_equal(label[raw == 1], 0)
    assert len(build_dataset(data_cfg("ade20k"), tmp_path, "val", train=False)) == 1


@pytest.mark.parametrize("split_dirs", [True, False])
def test_folder(tmp_path, split_dirs):
    masks = fake_data.write_folder(tmp_path, split_dirs=split_dirs)
    ds = build_dataset(data_cfg("folder"), tmp_path, "train", train=False)
    assert ds.classes == ["background", "crack", "rust"] and ds.palette[1] == (255, 0, 0)
    assert len(ds) == 3
    index = [i for i, (img, _) in enumerate(ds.samples) if img.endswith("c.jpg")][0]
    np.testing.assert_array_equal(ds[index][1], masks["sub/c"])
    assert len(build_dataset(data_cfg("folder"), tmp_path, "val", train=False)) == 1


def test_train_transform_is_seeded_per_sample(tmp_path):
    fake_data.write_cityscapes(tmp_path, "train", 2, size=(100, 180))
    ds = build_dataset(data_cfg("synthetic"), tmp_path, "train", train=True)
    a_img, a_lab = ds[(1, (0, 5))]
    b_img, b_lab = ds[(1, (0, 5))]
    c_img, _ = ds[(1, (0, 6))]
    assert a_img.shape == (128, 256, 3) and a_lab.shape == (128, 256)  # padded to the crop size
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    assert not np.array_equal(a_img, c_img)


# ----------------------------------------------------------------------------- errors

def test_missing_and_empty_root(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        build_dataset(data_cfg("cityscapes"), tmp_path / "nope", "train", train=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="is empty"):
        build_dataset(data_cfg("cityscapes"), tmp_path / "empty", "train", train=False)


def test_expected_folder_named(tmp_path):
    fake_data.write_ade20k(tmp_path)
    with pytest.raises(DatasetError, match=r"leftImg8bit/train.*Cityscapes layout"):
        build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    (tmp_path / "gtFine" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no \\*_leftImg8bit.png images under"):
        build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)


def test_missing_mask_points_to_prepare_script(tmp_path):
    fake_data.write_cityscapes(tmp_path, "train", 2, label_ids=True)
    with pytest.raises(DatasetError, match=r"2 of 2 images have no mask.*prepare_cityscapes.py"):
        build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)


def test_size_mismatch_names_file(tmp_path):
    fake_data.write_cityscapes(tmp_path, "train", 2)
    bad = sorted((tmp_path / "gtFine" / "train" / "synth").iterdir())[1]
    fake_data.write_png(bad, np.zeros((64, 64), np.uint8))
    ds = build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)
    ds[0]
    with pytest.raises(DatasetError, match=f"size mismatch.*{bad.name}.*is 64x64"):
        ds[1]


def test_label_out_of_range_names_file(tmp_path):
    fake_data.write_cityscapes(tmp_path, "train", 1)
    mask_path = next((tmp_path / "gtFine" / "train" / "synth").iterdir())
    mask = np.zeros((128, 256), np.uint8)
    mask[0, :3] = [19, 33, 255]
    fake_data.write_png(mask_path, mask)
    ds = build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)
    with pytest.raises(DatasetError, match=rf"{mask_path.name} has label values \[19, 33\].*0\.\.18"):
        ds[0]


def test_colour_mask_rejected(tmp_path):
    masks_dir = tmp_path / "masks" / "train"
    fake_data.write_folder(tmp_path)
    fake_data.write_png(masks_dir / "a.png", np.random.default_rng(0).integers(0, 3, (40, 48, 3), dtype=np.uint8))
    ds = build_dataset(data_cfg("folder"), tmp_path, "train", train=False)
    with pytest.raises(DatasetError, match="a.png is a colour image"):
        ds[0]


def test_folder_errors(tmp_path):
    fake_data.write_folder(tmp_path)
    with pytest.raises(DatasetError, match="no split 'test'.*splits/test.txt"):
        build_dataset(data_cfg("folder"), tmp_path, "test", train=False)
    (tmp_path / "classes.json").write_text(json.dumps({"classes": ["a", "b"], "palette": [[0, 0, 0]]}))
    with pytest.raises(DatasetError, match="classes.json.*2 \\[r, g, b\\] triples"):
        build_dataset(data_cfg("folder"), tmp_path, "train", train=False)
    (tmp_path / "classes.json").unlink()
    with pytest.raises(DatasetError, match="expected .*classes.json"):
        build_dataset(data_cfg("folder"), tmp_path, "train", train=False)


def test_split_list_entry_missing(tmp_path):
    fake_data.write_voc(tmp_path)
    (tmp_path / "JPEGImages" / "2007_000003.jpg").unlink()
    with pytest.raises(DatasetError, match="val.txt lists '2007_000003' but .*2007_000003.jpg does not exist"):
        build_dataset(data_cfg("voc12aug"), tmp_path, "val", train=False)


def test_unknown_dataset(tmp_path):
    fake_data.write_folder(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset 'kitti'"):
        build_dataset(data_cfg("kitti"), tmp_path, "train", train=False)


def test_prepare_cityscapes_maps_ids_and_is_idempotent(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "prepare_cityscapes.py"
    train_ids = fake_data.write_cityscapes(tmp_path, "train", 2, label_ids=True)
    cmd = [sys.executable, str(script), "--data-root", str(tmp_path), "--workers", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "wrote 2 files, skipped 0" in out.stdout, out.stderr
    ds = build_dataset(data_cfg("cityscapes"), tmp_path, "train", train=False)
    for i, expected in enumerate(train_ids):  # road 7->0, building 11->2, sky 23->10, person 24->11, car 26->13, 0->255
        np.testing.assert_array_equal(ds[i][1], expected)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert "wrote 0 files, skipped 2" in out.stdout
    assert not [p for p in tmp_path.rglob(".*") if ".tmp" in p.name]  # emaseg.atomic's temp names


def test_prepare_cityscapes_table():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "prepare_cityscapes", Path(__file__).resolve().parents[1] / "scripts" / "prepare_cityscapes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.lookup_table()
    # The 19 evaluated classes in train-id order, every other id (incl. 0-6, parking 9, rail 10,
    # guard rail 14, bridge 15, tunnel 16, polegroup 18, caravan 29, trailer 30) ignored.
    assert [int(i) for i in np.flatnonzero(table != 255)] == [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25,
                                                              26, 27, 28, 31, 32, 33]
    assert table[[7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]].tolist() == list(range(19))


def test_infinite_sampler_shards_epochs_and_resumes():
    from itertools import islice

    from emaseg.data.loader import InfiniteSampler

    def take(n, **kw):
        return list(islice(iter(InfiniteSampler(5, batch_size=2, seed=3, **kw)), n))

    single = take(12, world_size=1)  # 6 iterations x 2 (global batch 2)
    assert [p for _, (_, p) in single] == list(range(12))
    # Every epoch (5 consecutive positions) is a permutation of the dataset.
    indices = [i for i, _ in single]
    assert sorted(indices[:5]) == sorted(indices[5:10]) == list(range(5)) and indices[:5] != indices[5:10]
    # Two ranks with batch 2: global batch 4; rank r takes positions 4k + 2r, 4k + 2r + 1.
    ranks = [list(islice(iter(InfiniteSampler(5, batch_size=2, seed=3, rank=r, world_size=2)), 6)) for r in (0, 1)]
    assert [p for _, (_, p) in ranks[0]] == [0, 1, 4, 5, 8, 9] and [p for _, (_, p) in ranks[1]] == [2, 3, 6, 7, 10, 11]
    merged = sorted(ranks[0] + ranks[1], key=lambda item: item[1][1])
    assert merged == take(12)  # same stream as one process with the global batch
    # Resuming at iteration 3 continues the stream exactly.
    assert take(6, start_iter=3) == single[6:12]


def test_cityscapes_id_to_train_id_covers_each_class_once():
    from emaseg.classes import CITYSCAPES_CLASSES, CITYSCAPES_ID_TO_TRAIN_ID

    assert sorted(CITYSCAPES_ID_TO_TRAIN_ID.values()) == list(range(len(CITYSCAPES_CLASSES)))
    assert CITYSCAPES_ID_TO_TRAIN_ID[7] == CITYSCAPES_CLASSES.index("road")
    assert CITYSCAPES_ID_TO_TRAIN_ID[26] == CITYSCAPES_CLASSES.index("car")
    assert CITYSCAPES_ID_TO_TRAIN_ID[33] == CITYSCAPES_CLASSES.index("bicycle")


def test_image_files_are_what_opencv_reads(tmp_path):
    """The rule the C++ runtime's folder listing uses too (ctest test_pipeline checks its side)."""
    import cv2

    from emaseg.data.datasets import is_image_file

    image = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.png", "D.JPG", "f.webp", ".a.png.Xy12ab.tmp.png", "e.png"):
        assert cv2.imwrite(str(tmp_path / name), image)
    (tmp_path / "e.png").rename(tmp_path / "e")            # no extension, PNG contents
    (tmp_path / "broken.png").write_bytes(b"not a png")    # listed: its loader names it
    (tmp_path / "notes.txt").write_text("not an image")
    assert sorted(p.name for p in tmp_path.iterdir() if is_image_file(p)) == ["D.JPG", "a.png", "broken.png",
                                                                             "e", "f.webp"]
