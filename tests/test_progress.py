"""The progress bar's rate is measured, never the burst of its first report."""

import time

from geosam.cli.progress import ProgressBar


def test_first_report_does_not_count_as_work_done_in_no_time() -> None:
    with ProgressBar("tiling", "chip") as progress:
        progress(40, 100)  # 40 chips done before the bar existed
        bar = progress._bar
        assert bar is not None and bar.n == 40
        assert bar.format_dict["rate"] is None or bar.format_dict["rate"] < 1000
        time.sleep(0.2)
        progress(41, 100)
        rate = (
            bar.format_dict["rate"]
            or (bar.n - bar.format_dict["initial"]) / bar.format_dict["elapsed"]
        )
        assert rate < 20  # one chip in ~0.2 s, not 41 chips in no time
