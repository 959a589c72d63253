"""MetricsLog: every record goes to metrics.jsonl; the log gets full records every print_freq steps and a
short line for each other step, so a console tail moves with every step."""

import logging

from tortoise.training.metrics import MetricsLog, read_metrics


def test_every_step_reaches_the_log(tmp_path, caplog):
    metrics = MetricsLog(tmp_path / "metrics.jsonl", print_freq=7)
    with caplog.at_level(logging.INFO, logger="tortoise.training.metrics"):
        for step in range(1, 9):
            metrics.write("train", step=step, steps=14, loss_gpt_total=2.5 - step / 10)
        metrics.write("sample_start", step=8)
    metrics.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 9
    assert lines[0].startswith("Training Metrics: ") and lines[6].startswith("Training Metrics: ")
    assert lines[2] == "Step 3/14: loss 2.2000"
    assert "sample_start" in lines[8]
    assert [r["step"] for r in read_metrics(tmp_path / "metrics.jsonl")] == list(range(1, 9)) + [8]
