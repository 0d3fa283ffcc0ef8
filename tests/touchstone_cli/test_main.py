"""The team CLI's own behaviour: errors a person can act on, progress display, tables."""

import io

from tests.conftest import free_port, unavailable
from touchstone_cli import main as cli
from touchstone_cli.progress import ProgressBar, human_bytes


def test_cli_never_imports_django():
    import subprocess
    import sys

    code = "import sys, touchstone_cli.main; assert 'django' not in sys.modules, 'django imported'"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_missing_configuration_says_how_to_log_in(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "CONFIG_PATH", tmp_path / "none.json")
    monkeypatch.delenv("TOUCHSTONE_SERVER", raising=False)
    monkeypatch.delenv("TOUCHSTONE_TOKEN", raising=False)
    assert cli.main(["phases"]) == 2
    assert "touchstone login --server URL --token TOKEN" in capsys.readouterr().err


def test_an_unreachable_server_is_named(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(cli, "CONFIG_PATH", tmp_path / "none.json")
    server = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["--server", server, "--token", "ts_x", "status", "1"]) == 2
    assert f"Cannot reach {server}" in capsys.readouterr().err


def test_submitting_an_image_docker_does_not_have_explains_how_to_build_it(monkeypatch, tmp_path):
    import shutil

    import pytest

    if shutil.which("docker") is None:
        unavailable("docker CLI not installed")
    with pytest.raises(cli.CliError, match="Build it first"):
        cli.docker_save("touchstone-test/does-not-exist:never", tmp_path)


def test_progress_bar_reports_bytes_rate_and_completion():
    stream = io.StringIO()
    bar = ProgressBar(total=4 * 2**20, label="Uploading", stream=stream)
    for _ in range(4):
        bar.advance(2**20)
    line = stream.getvalue().strip().splitlines()[-1]
    assert line.startswith("Uploading [") and "100.0%" in line and "4.0 MiB/4.0 MiB" in line
    assert human_bytes(1536) == "1.5 KiB" and human_bytes(12) == "12 B"


def test_tables_align_columns(capsys):
    cli.print_table(["organ", "DSC"], [["liver", "95.1"], ["gall_bladder", "61.0"]])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "organ         DSC"
    assert lines[1].startswith("------------")
    assert lines[3] == "gall_bladder  61.0"


def test_a_long_problem_wraps_under_its_column_to_fit_the_terminal(capsys):
    problem = "Crashed (non-zero exit). " + "ValueError: unsupported orientation LPI in hrh_000. " * 4
    cli.print_table(["job", "problem"], [["1", problem], ["2", ""]], width=80)
    lines = capsys.readouterr().out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert lines[2].startswith("1    Crashed (non-zero exit).")
    continuation = lines[3:-1]
    assert continuation and all(line.startswith(" " * 5) and line[5] != " " for line in continuation)
    assert " ".join(line.strip() for line in lines[2:-1])[5:] == problem.strip()
    assert lines[-1] == "2"


def test_a_crashed_job_reads_as_sentences_with_its_last_output_line(capsys):
    job = {"index": 1, "canary": False, "state_label": "Failed", "cases": 4, "attempt": 1, "run_seconds": 1.0,
           "exit_reason": "crashed", "exit_reason_label": "Crashed (non-zero exit)",
           "detail": "The container exited with code 1.", "last_output_line": "ValueError: unsupported orientation"}
    ok = {**job, "index": 0, "canary": True, "state_label": "Succeeded", "exit_reason": "ok", "detail": "Finished.",
          "last_output_line": None}
    cli.print_submission({"id": 3, "team": "bob", "algorithm": "fragile", "phase": "final", "state_label": "Completed",
                          "failure_reason": "",
                          "jobs": [ok, job], "url": "http://x/submissions/3/"})
    out = " ".join(capsys.readouterr().out.split())
    assert ("Crashed (non-zero exit). The container exited with code 1. "
            "Last line of its output: ValueError: unsupported orientation") in out
    assert "Finished" not in out  # a job that ended well needs no words


def test_results_show_missed_organs_beside_the_hd95_mean(capsys):
    organ = {"organ": "liver", "dsc": 0.57, "nsd": 0.6, "hd95_mm": 15.0, "hd95_n_infinite": 1, "n": 3, "n_failed": 1}
    site = {"name": "North", "out_of_distribution": False, "cases": 3, "failed_cases": 0, "dsc": 0.57, "nsd": 0.6}
    cli.print_submission({"id": 4, "team": "bob", "algorithm": "unet", "phase": "final", "state_label": "Completed",
                          "failure_reason": "", "jobs": [], "url": "http://x/submissions/4/",
                          "results": {"dsc": 0.57, "nsd": 0.6, "organs": [organ], "sites": [site]}})
    assert "15.0 (+1 missed)" in capsys.readouterr().out
