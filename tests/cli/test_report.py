"""The report's figures, checked on their matplotlib objects (scale, legends, titles, the recommended loss)."""

import pathlib

import pytest

from keras_lossopt.cli.report import (
    OTHER_COLOR,
    RECOMMENDED_COLOR,
    TIED_HATCH,
    curves_figure,
    metrics_figure,
    plot_curves,
    plot_metrics,
)

matplotlib = pytest.importorskip("matplotlib")
plt = pytest.importorskip("matplotlib.pyplot")
to_rgb = matplotlib.colors.to_rgb

# Epoch means of a real digits-imbalanced run: LDAM's loss starts near 12.7, the others near 1-3.
CURVES = {
    "crossentropy": {"loss": [2.0, 1.2, 0.8], "val_macro_f1": [0.30, 0.45, 0.50]},
    "logit_adjusted": {"loss": [1.6, 1.1, 0.7], "val_macro_f1": [0.35, 0.55, 0.72]},
    "ldam": {"loss": [12.7, 4.1, 2.2], "val_macro_f1": [0.33, 0.46, 0.56]},
}
SUMMARY = {
    "crossentropy": {"accuracy": (0.52, 0.01), "macro_f1": (0.40, 0.01)},
    "class_balanced_focal": {"accuracy": (0.86, 0.01), "macro_f1": (0.86, 0.01)},
    "logit_adjusted": {"accuracy": (0.81, 0.01), "macro_f1": (0.80, 0.01)},
}


@pytest.fixture
def close_figures():
    yield
    plt.close("all")


def test_the_training_loss_is_on_a_log_scale_and_every_panel_has_a_legend_and_its_seeds(close_figures):
    figure = curves_figure(CURVES, seeds=[0, 1, 2], recommended="logit_adjusted")
    training, validation = figure.axes
    assert training.get_yscale() == "log" and validation.get_yscale() == "linear"
    expected = ["crossentropy", "logit_adjusted (recommended)", "ldam"]
    for axis in (training, validation):
        assert [text.get_text() for text in axis.get_legend().get_texts()] == expected
        assert "mean over seeds 0, 1, 2" in axis.get_title()
    assert training.get_title().startswith("training loss (log scale")
    assert validation.get_title().startswith("validation macro_f1")
    widths = {line.get_label(): line.get_linewidth() for line in validation.get_lines()}
    assert widths["logit_adjusted (recommended)"] > max(widths["crossentropy"], widths["ldam"])
    # the log axis spans LDAM's start and the smallest loss, so no curve is flattened against the axis
    low, high = training.get_ylim()
    assert low <= 0.7 and high >= 12.7


def test_a_loss_that_goes_negative_stays_on_a_linear_axis_and_one_seed_is_named(close_figures):
    curves = {"shaped": {"loss": [0.5, -0.2, -0.4]}}
    figure = curves_figure(curves, seeds=[3])
    assert figure.axes[0].get_yscale() == "linear"
    assert "mean over seed 3" in figure.axes[0].get_title()
    assert "log scale" not in figure.axes[0].get_title()


def test_metrics_mark_the_recommended_loss_and_hatch_the_tied_ones(close_figures):
    figure = metrics_figure(SUMMARY, recommended="logit_adjusted", tied=["class_balanced_focal", "logit_adjusted"])
    for axis in figure.axes:
        bars = axis.patches
        assert [to_rgb(bar.get_facecolor()) for bar in bars] == [
            to_rgb(OTHER_COLOR),
            to_rgb(OTHER_COLOR),
            to_rgb(RECOMMENDED_COLOR),
        ]
        assert [bar.get_hatch() or "" for bar in bars] == ["", TIED_HATCH, ""]
        bold = [label.get_text() for label in axis.get_xticklabels() if label.get_fontweight() == "bold"]
        assert bold == ["logit_adjusted"]
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()] == [
        "recommended: logit_adjusted",
        "tied with it (within the noise)",
    ]


def test_metrics_without_a_recommendation_have_one_colour_and_no_legend(close_figures):
    figure = metrics_figure(SUMMARY)
    assert {to_rgb(bar.get_facecolor()) for axis in figure.axes for bar in axis.patches} == {to_rgb(OTHER_COLOR)}
    assert figure.legends == []


def test_a_clear_recommendation_has_no_tied_entry(close_figures):
    figure = metrics_figure(SUMMARY, recommended="class_balanced_focal", tied=())
    assert [text.get_text() for text in figure.legends[0].get_texts()] == ["recommended: class_balanced_focal"]


def test_the_plots_write_png_files(tmp_path: pathlib.Path):
    assert plot_curves(tmp_path / "curves.png", CURVES, seeds=[0, 1], recommended="ldam")
    assert plot_metrics(tmp_path / "metrics.png", SUMMARY, recommended="crossentropy")
    for name in ("curves.png", "metrics.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plt.get_fignums() == []  # the figures are closed once written
