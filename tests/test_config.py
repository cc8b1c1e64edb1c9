"""Config: defaults per mode, files, overrides and one-line validation errors."""

from pathlib import Path

import pytest

from fashion_tcn.config import Config, ConfigError, load_config, override, save_config


def test_resolved_fills_mode_defaults():
    rows = Config().resolved()
    assert rows.model.filters == 64 and rows.train.epochs >= 1
    pixels = override(Config(), {"data.sequence": "pixels"}).resolved()
    assert (pixels.model.filters, pixels.model.kernel_size) == (25, 7)
    assert pixels.model.dilations == [1, 2, 4, 8, 16, 32, 64, 128]


def test_explicit_values_beat_mode_defaults():
    cfg = override(Config(), {"model.filters": 16, "train.epochs": 2}).resolved()
    assert (cfg.model.filters, cfg.train.epochs) == (16, 2)


@pytest.mark.parametrize("suffix", [".yaml", ".toml"])
def test_files_and_round_trip(tmp_path, suffix):
    path = tmp_path / f"c{suffix}"
    if suffix == ".yaml":
        path.write_text(
            "data:\n  sequence: pixels\nmodel:\n  dilations: [1, 2]\ntrain:\n  lr: 0.01\n"
        )
    else:
        path.write_text(
            '[data]\nsequence = "pixels"\n[model]\ndilations = [1, 2]\n[train]\nlr = 0.01\n'
        )
    cfg = load_config(path)
    assert (cfg.data.sequence, cfg.model.dilations, cfg.train.lr) == ("pixels", [1, 2], 0.01)
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"train.lr": -1.0}, "lr must be > 0"),
        ({"train.lr": float("nan")}, "lr must be > 0"),
        ({"train.batch_size": 0}, "batch_size"),
        ({"train.optimizer": "adagrad"}, "unknown optimizer"),
        ({"model.activation": "sigmoidish"}, "unknown activation"),
        ({"model.norm": "group"}, "unknown norm"),
        ({"model.dilations": [1, 0]}, "dilations"),
        ({"model.dropout": 1.0}, "dropout"),
        ({"data.sequence": "spiral"}, "unknown sequence"),
        ({"data.limit_train": 3}, "limit_train"),
        ({"train.label_smoothing": 1.0}, "label_smoothing"),
        ({"train.ema": -0.1}, "ema must be"),
        ({"model.step_filters": -1}, "step_filters must be"),
        ({"model.step_stages": 0}, "step_stages must be"),
        ({"model.pooling": "max"}, "unknown pooling"),
    ],
)
def test_bad_values_fail_with_one_line(overrides, words):
    with pytest.raises(ConfigError, match=words) as error:
        override(Config(), overrides)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("model:\n  filterz: 3\n", "unknown key"),
        ("modle:\n  filters: 3\n", "unknown section"),
        ("train:\n  lr: [1\n", "not valid YAML"),
        ("- 1\n- 2\n", "expected a mapping"),
        ("train:\n  lr: 0\n", "lr must be"),
    ],
)
def test_bad_files_name_the_file(tmp_path, text, words):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=words) as error:
        load_config(path)
    assert str(path) in str(error.value) or words.startswith("lr")
    assert "\n" not in str(error.value)


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent/config.yaml")


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.*")))
def test_shipped_configs_load(path):
    cfg = load_config(path).resolved()
    assert cfg.train.epochs >= 1 and cfg.model.filters >= 1


def test_short_receptive_field_is_an_error_naming_the_cover():
    cfg = override(Config(), {"data.sequence": "pixels", "model.dilations": [1, 2, 4]})
    with pytest.raises(ConfigError, match=r"receptive field 85 .*784 steps.*1,2,4,8,16,32,64"):
        cfg.resolved()
    allowed = override(cfg, {"model.allow_short_receptive_field": True})
    assert allowed.resolved().model.dilations == [1, 2, 4]


@pytest.mark.parametrize("overrides", [{"data.sequence": "pixels"}, {"model.kind": "gru"}])
def test_step_filters_needs_a_tcn_on_rows(overrides):
    cfg = override(Config(), {"model.step_filters": 8, **overrides})
    with pytest.raises(ConfigError, match=r"step_filters .* needs --model tcn on rows or columns"):
        cfg.resolved()


def test_mean_pooling_needs_a_tcn():
    cfg = override(Config(), {"model.pooling": "mean", "model.kind": "lstm"})
    with pytest.raises(ConfigError, match="pooling is the TCN's readout; lstm has none"):
        cfg.resolved()
    assert override(Config(), {"model.pooling": "mean"}).resolved().model.pooling == "mean"
