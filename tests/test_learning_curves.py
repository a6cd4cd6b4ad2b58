"""Test error through training from metric records: training time without interruptions, time to accuracy."""

import pytest

from capsjax.analysis.learning_curves import (
    ErrorPoint,
    continued_curve,
    error_curve,
    interruptions,
    learning_curves_figure,
    plot_learning_curve,
    plot_learning_curves,
    time_to_accuracy,
    training_hours,
)


def records_of_a_resumed_run():
    """Records every 60 s, a 2-hour stop between steps 200 and 250, test evaluations at steps 100 and 300."""
    times = {50: 0, 100: 60, 150: 120, 200: 180, 250: 180 + 7200, 300: 180 + 7260}
    records = [{"step": s, "time": 1e9 + t, "train/loss": 0.1} for s, t in times.items()]
    records += [
        {"step": 100, "time": 1e9 + 61, "test/error_percent": 1.2},
        {"step": 300, "time": 1e9 + 7261, "test/error_percent": 0.45},
    ]
    return records


def test_training_time_leaves_out_the_stop_and_counts_the_first_interval():
    hours = training_hours(records_of_a_resumed_run())
    # 60 s before the first record, then 60 s per record; the 7,200 s stop becomes one typical 60 s interval
    assert hours[50] * 3600 == pytest.approx(60)
    assert hours[300] * 3600 == pytest.approx(60 * 6, abs=2)


def test_interruptions_count_the_stop_and_its_length():
    stops = interruptions(records_of_a_resumed_run())
    assert stops.count == 1
    assert stops.hours * 3600 == pytest.approx(7200 - 60, abs=1)  # the stop, less the typical interval (~60 s) kept
    assert stops.elapsed_hours * 3600 == pytest.approx(180 + 7260)  # the first record to the last
    assert interruptions(records_of_a_resumed_run(), gap_seconds=10_000).count == 0


def test_curve_and_time_to_accuracy():
    curve = error_curve(records_of_a_resumed_run(), steps_per_epoch=100)
    assert [(p.step, p.epoch, p.error_percent) for p in curve] == [(100, 1.0, 1.2), (300, 3.0, 0.45)]
    reached = time_to_accuracy(curve, [98.0, 99.5, 99.6])
    assert reached["98"].step == 100 and reached["99.5"].step == 300 and reached["99.6"] is None


def test_learning_curve_figure(tmp_path):
    curve = error_curve(records_of_a_resumed_run(), steps_per_epoch=100)
    path = plot_learning_curve(curve, tmp_path / "curve.png", marks=[99.0])
    assert path.stat().st_size > 1000


def test_a_continued_run_counts_on_from_where_the_first_ended(tmp_path):
    first = error_curve(records_of_a_resumed_run(), steps_per_epoch=100)
    second = [ErrorPoint(100, 1.0, 0.4, 0.5), ErrorPoint(200, 2.0, 0.35, 1.0)]
    joined = continued_curve([first, second])
    assert [(p.step, p.epoch, p.error_percent) for p in joined] == [
        (100, 1.0, 1.2),
        (300, 3.0, 0.45),
        (400, 4.0, 0.4),
        (500, 5.0, 0.35),
    ]
    assert joined[3].hours == pytest.approx(first[-1].hours + 1.0)
    assert continued_curve([first]) == first
    path = plot_learning_curve(joined, tmp_path / "curve.png", restarts=[joined[1]])
    assert path.stat().st_size > 1000


def test_several_runs_share_both_panels_with_a_legend(tmp_path):
    first = error_curve(records_of_a_resumed_run(), steps_per_epoch=100)
    second = [ErrorPoint(100, 1.0, 2.0, 0.5), ErrorPoint(200, 2.0, 1.5, 1.0)]
    fig = learning_curves_figure({"capsnet": first, "cnn": second}, marks=[99.0])
    for ax, x in zip(fig.axes, ("epoch", "hours"), strict=True):
        lines = {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}
        assert sorted(lines) == ["capsnet", "cnn"]
        assert list(lines["cnn"].get_xdata()) == [getattr(p, x) for p in second]
        assert list(lines["cnn"].get_ydata()) == [2.0, 1.5]
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["capsnet", "cnn"]
    assert learning_curves_figure({"": first}).axes[0].get_legend() is None  # one unlabelled run: no legend
    assert plot_learning_curves({"capsnet": first, "cnn": second}, tmp_path / "c.png").stat().st_size > 1000
