"""Flags generated from the config dataclasses: every field has one, with help; booleans switch
both ways; what a flag leaves out, the config file keeps."""

from dataclasses import fields

import pytest

from fashion_tcn.config import Config, load_config, override
from fashion_tcn.flags import SECTIONS, config_overrides, flag_name
from fashion_tcn.flags import build_parser as _parser


def _train_flags(*argv: str) -> dict:
    return config_overrides(_parser().parse_args(["train", *argv]))


def test_every_config_field_has_a_flag_with_help():
    train = _parser()._subparsers._group_actions[0].choices["train"]
    actions = {action.dest: action for action in train._actions}
    for section, (cls, _) in SECTIONS.items():
        for field in fields(cls):
            action = actions[f"{section}.{field.name}"]
            assert action.help and len(action.help) > 10, (section, field.name)
            assert flag_name(section, field.name) in action.option_strings


def test_a_flag_switches_off_a_true_from_the_config_file(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  skip_connections: true\ntrain:\n  tensorboard: true\n")
    saved = load_config(path)
    assert saved.model.skip_connections and saved.train.tensorboard
    cfg = override(saved, _train_flags("--no-skip-connections"))
    assert cfg.model.skip_connections is False
    assert cfg.train.tensorboard is True  # left alone
    assert override(Config(), _train_flags("--skip-connections")).model.skip_connections


def test_flags_reach_their_fields_and_absent_flags_change_nothing():
    flags = _train_flags(
        "--model", "gru", "--dilations", "1,2,4", "--augment", "light", "--lr", "3e-4"
    )
    cfg = override(Config(), flags)
    assert (cfg.model.kind, cfg.model.dilations, cfg.augment.preset) == ("gru", [1, 2, 4], "light")
    assert cfg.train.lr == pytest.approx(3e-4)
    assert override(Config(), _train_flags()) == Config()


def test_a_bad_flag_value_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        _parser().parse_args(["train", "--dilations", "1,x"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "comma-separated integers" in err and err.count("\n") == 1
