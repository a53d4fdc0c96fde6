import json

import pytest

from emaseg.config import CONFIGS, Config, get_config

SEED = {
    "emanet_r50-d8_512x1024_80k_cityscapes": (50, False, "whole", (512, 1024)),
    "emanet_r101-d8_512x1024_80k_cityscapes": (101, False, "whole", (512, 1024)),
    "emanet_r50-d8_769x769_80k_cityscapes": (50, True, "slide", (769, 769)),
    "emanet_r101-d8_769x769_80k_cityscapes": (101, True, "slide", (769, 769)),
}


@pytest.mark.parametrize("name", sorted(SEED))
def test_seed_configs_hold_the_reference_numbers(name):
    cfg = get_config(name)
    depth, align, mode, crop = SEED[name]
    assert (cfg.model.depth, cfg.model.align_corners, cfg.test.mode, cfg.data.crop_size) == (depth, align, mode, crop)
    assert (cfg.model.num_bases, cfg.model.num_stages, cfg.model.momentum, cfg.model.ema_channels) == (64, 3, 0.1, 512)
    s = cfg.schedule
    assert (s.iters, s.batch_size, s.lr, s.momentum, s.weight_decay, s.poly_power, s.min_lr, s.aux_weight) == (
        80000, 2, 0.01, 0.9, 0.0005, 0.9, 1e-4, 0.4)
    if mode == "slide":
        assert (cfg.test.crop_size, cfg.test.stride, cfg.data.scale) == ((769, 769), (513, 513), (2049, 1025))


def test_voc_recipe():
    cfg = get_config("emanet_r101-d8_513x513_30k_voc12aug")
    assert (cfg.model.num_classes, cfg.data.crop_size, cfg.schedule.batch_size, cfg.schedule.iters) == (21, (513, 513), 16, 30000)
    assert (cfg.schedule.lr, cfg.schedule.weight_decay) == (0.009, 1e-4)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_round_trip_through_json(name):
    cfg = get_config(name)
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg


def test_override():
    cfg = get_config("emanet_r50-d8_512x1024_80k_cityscapes").override(
        ["model.depth=101", "data.crop_size=[256,512]", "schedule.lr=0.02", "data.dataset=folder", "test.aug_flip=false"])
    assert (cfg.model.depth, cfg.data.crop_size, cfg.schedule.lr, cfg.data.dataset, cfg.test.aug_flip) == (
        101, (256, 512), 0.02, "folder", False)
    assert get_config("emanet_r50-d8_512x1024_80k_cityscapes").model.depth == 50  # named config untouched


@pytest.mark.parametrize("bad", ["model.nope=1", "model=1", "model.depth=abc", "model.depth", "test.aug_flip=2", "data.crop_size=5"])
def test_override_errors(bad):
    with pytest.raises(ValueError):
        get_config("emanet_r50-d8_512x1024_80k_cityscapes").override([bad])


def test_unknown_config():
    with pytest.raises(ValueError, match="unknown config"):
        get_config("nope")


def test_config_differences_names_each_changed_leaf():
    from emaseg.config import config_differences

    cfg = get_config("emanet_r50-d8_512x1024_80k_cityscapes")
    other = cfg.override(["schedule.lr=0.02", "data.crop_size=[256,256]"])
    assert config_differences(cfg.to_dict(), cfg.to_dict()) == []
    assert config_differences(cfg.to_dict(), other.to_dict()) == [
        "data.crop_size: (512, 1024) -> (256, 256)", "schedule.lr: 0.01 -> 0.02"]
    # A tuple and the list JSON makes of it are the same value.
    assert config_differences({"a": (1, 2)}, {"a": [1, 2]}) == []
