"""RunCSVLogger: a resumed run keeps the earlier rows of RUN/metrics.csv (Lightning's writer would delete them)."""
import csv
import warnings

from train.loggers import RunCSVLogger


def _run(root, rows):
    logger = RunCSVLogger(save_dir=root, name="", version="")
    for step, metrics in rows:
        logger.log_metrics(metrics, step=step)
    logger.save()
    return logger


def test_resume_appends_to_metrics_csv_under_one_header(tmp_path):
    (tmp_path / "checkpoints").mkdir()  # a run folder is never empty: Lightning would warn and delete
    _run(tmp_path, [(0, {"loss/d": 1.5, "loss/g": 0.25}), (1, {"loss/d": 1.25})])
    first = (tmp_path / "metrics.csv").read_text()
    assert first.splitlines() == ["loss/d,loss/g,step", "1.5,0.25,0", "1.25,,1"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the "will be deleted" warning would be false here
        _run(tmp_path, [(1, {"loss/d": 1.0, "lr": 0.001}), (2, {"loss/g": 0.5})])
    text = (tmp_path / "metrics.csv").read_text()
    # a new key rewrites the header (sorted, as Lightning does); the old rows keep their cells
    assert text.splitlines() == ["loss/d,loss/g,lr,step", "1.5,0.25,,0", "1.25,,,1", "1.0,,0.001,1", ",0.5,,2"]
    _run(tmp_path, [(3, {"loss/d": 0.75})])
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [r["step"] for r in rows] == ["0", "1", "1", "2", "3"] and rows[-1]["loss/d"] == "0.75"
