import pytest

from pisl.config import ConfigError, get_cfg, register_config_extension
from pisl.config.config import _EXTENSIONS


def test_base_inheritance_and_overrides(tmp_path):
    (tmp_path / "base.yml").write_text("SOLVER:\n  BASE_LR: 0.5\n  MAX_EPOCH: 3\nINPUT:\n  SIZE_TRAIN: [10, 20]\n")
    (tmp_path / "child.yml").write_text("_BASE_: base.yml\nSOLVER:\n  MAX_EPOCH: 7\n")
    cfg = get_cfg()
    cfg.merge_from_file(str(tmp_path / "child.yml"))
    assert cfg.SOLVER.BASE_LR == 0.5 and cfg.SOLVER.MAX_EPOCH == 7 and list(cfg.INPUT.SIZE_TRAIN) == [10, 20]
    cfg.merge_from_list(["SOLVER.MAX_EPOCH", "9", "MODEL.DEVICE", "cpu"])
    assert cfg.SOLVER.MAX_EPOCH == 9 and cfg.MODEL.DEVICE == "cpu"


def test_unknown_key_in_file_names_key_and_close_match(tmp_path):
    (tmp_path / "bad.yml").write_text("SOLVER:\n  BASE_LRR: 0.1\n")
    with pytest.raises(ConfigError, match=r"SOLVER.BASE_LRR.*Did you mean 'SOLVER.BASE_LR'"):
        get_cfg().merge_from_file(str(tmp_path / "bad.yml"))


def test_unknown_key_on_command_line():
    with pytest.raises(ConfigError, match="Unknown config key 'SOLVR'"):
        get_cfg().merge_from_list(["SOLVR.BASE_LR", "1"])
    with pytest.raises(ConfigError, match="KEY VALUE"):
        get_cfg().merge_from_list(["SOLVER.BASE_LR"])


def test_project_extension_adds_keys():
    def add_demo_config(cfg):
        from pisl.config import CfgNode

        cfg.DEMO_PROJECT = CfgNode()
        cfg.DEMO_PROJECT.ALPHA = 1.0

    register_config_extension(add_demo_config)
    try:
        cfg = get_cfg()
        cfg.merge_from_list(["DEMO_PROJECT.ALPHA", "2.5"])
        assert cfg.DEMO_PROJECT.ALPHA == 2.5
    finally:
        _EXTENSIONS.remove(add_demo_config)
    assert "DEMO_PROJECT" not in get_cfg()


def test_missing_config_file():
    with pytest.raises(ConfigError, match="nope.yml"):
        get_cfg().merge_from_file("nope.yml")


def _load(tmp_path, text, *opts):
    from pisl.config import load_config

    (tmp_path / "c.yml").write_text(text)
    return load_config(str(tmp_path / "c.yml"), list(opts))


def test_integers_for_float_keys_are_accepted(tmp_path):
    cfg = _load(tmp_path, "CLUSTER:\n  EPS: 0.5\nSOLVER:\n  BASE_LR: 1\n", "MODEL.HEADS.GEM_P", "-1")
    assert cfg.SOLVER.BASE_LR == 1.0 and isinstance(cfg.SOLVER.BASE_LR, float)
    assert cfg.MODEL.HEADS.GEM_P == -1.0


@pytest.mark.parametrize("opts, message", [
    (["DATALOADER.NUM_INSTANCE", "0"], "NUM_INSTANCE is 0"),
    (["SOLVER.IMS_PER_BATCH", "30"], r"IMS_PER_BATCH \(30\) is not a multiple of DATALOADER.NUM_INSTANCE \(4\)"),
    (["CLUSTER.EPS", "1.5"], "CLUSTER.EPS is 1.5"),
    (["INPUT.SIZE_TRAIN", "[128]"], r"INPUT.SIZE_TRAIN is \[128\]: give \[height, width\]"),
    (["IMPORTS", "['projects.PISL']", "PISL.NUM_PARTS", "0"], "PISL.NUM_PARTS is 0"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.BOX_LIMITS", "[0.5, 0.5]"], r"BOX_LIMITS is \[0.5, 0.5\]: give six"),
    (["IMPORTS", "['projects.PISL']", "PISL.SCD.W_BOUND", "-1.0"], "PISL.SCD.W_BOUND is -1.0"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.ANCHORS", "torso"], "ANCHORS is 'torso': use stripes or person"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.PERSON_QUANTILE", "0.0"], "PERSON_QUANTILE is 0.0"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.PERSON_CUE", "pixels"], "PERSON_CUE is 'pixels': use features or image"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.CONDITION", "global+extent"], "CONDITION is 'global\\+extent'"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.CONDITION", "global+rows+extent"], "use global or global\\+rows"),
    (["IMPORTS", "['projects.PISL']", "PISL.DIFFUSION.BOX_LIMITS", "[]", "PISL.SCD.W_BOUND", "1.0"],
     "the clamp has no bound to keep off"),
])
def test_invalid_values_fail_up_front_naming_the_key(tmp_path, opts, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, "SEED: 1\n", *opts)


def test_project_section_without_imports_hints_at_imports(tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown config key 'MYPROJECT'.*IMPORTS: \[\"projects.MYPROJECT\"\]"):
        _load(tmp_path, "MYPROJECT:\n  NUM_PARTS: 3\n")
