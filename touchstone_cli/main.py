"""`touchstone`: the team CLI. Talks HTTP to the platform only; never imports Django.

    touchstone login --server URL --token TOKEN     remember where and who you are
    touchstone phases                               what you can submit to
    touchstone submit IMAGE --phase SLUG [--wait]   docker save IMAGE and upload it
    touchstone status ID [--wait]                   a submission's state, job by job
    touchstone results ID [--csv FILE]              per-organ and per-site scores
    touchstone logs ID                              container log tails (where the phase allows)
    touchstone leaderboard SLUG                     the phase's ranking
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from touchstone_cli.progress import ProgressBar

CONFIG_PATH = Path(os.environ.get("TOUCHSTONE_CONFIG", Path.home() / ".config" / "touchstone" / "config.json"))
FINAL_STATES = {"completed", "failed", "cancelled"}
CHUNK_BYTES = 1 << 20


class CliError(Exception):
    """An error for the person at the terminal: what happened and what to do."""


# --- configuration and HTTP ------------------------------------------------------------------------
def load_config() -> dict[str, str]:
    config: dict[str, str] = {}
    if CONFIG_PATH.exists():
        config.update(json.loads(CONFIG_PATH.read_text()))
    for key, variable in (("server", "TOUCHSTONE_SERVER"), ("token", "TOUCHSTONE_TOKEN")):
        if os.environ.get(variable):
            config[key] = os.environ[variable]
    return config


class Client:
    def __init__(self, server: str | None, token: str | None, timeout_s: float = 60.0):
        if not server:
            raise CliError("No server configured. Run `touchstone login --server URL --token TOKEN`.")
        if not token:
            raise CliError("No API token configured. Run `touchstone login --server URL --token TOKEN`.")
        self.server = server.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        url = f"{self.server}/api/v1/{path.lstrip('/')}"
        kwargs.setdefault("timeout", self.timeout_s)
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"Cannot reach {self.server}. Is the server address right, and is it running?") from None
        except requests.Timeout:
            raise CliError(f"{self.server} did not answer in time. Try again, or pass --timeout.") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except ValueError:
                detail = response.text[:300]
            raise CliError(f"{detail} (HTTP {response.status_code})")
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)


# --- commands ---------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    client = Client(args.server, args.token)
    phases = client.get("phases/")  # proves the server and token work before saving them
    CONFIG_PATH.write_text(json.dumps({"server": client.server, "token": args.token}))
    CONFIG_PATH.chmod(0o600)
    print(f"Logged in to {client.server}; {len(phases)} phase(s) available. Saved to {CONFIG_PATH}.")
    return 0


def cmd_phases(client: Client, args: argparse.Namespace) -> int:
    rows = [
        [p["slug"], p["name"], "open" if p["is_open"] else "closed", str(p["cases"]),
         f"{p['time_limit_per_case_s']} s/case", f"{p['memory_mb']} MB", "GPU" if p["gpu"] else "CPU",
         f"{p['submissions_per_day']}/day"]
        for p in client.get("phases/")
    ]
    print_table(["phase", "name", "state", "cases", "time", "memory", "device", "quota"], rows)
    return 0


def docker_save(image: str, directory: Path) -> Path:
    """`docker save IMAGE` to a file, so its size is known and the upload can show progress."""
    if shutil.which("docker") is None:
        raise CliError("The docker command is not installed here; it is needed to export your image.")
    inspect = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True)
    if inspect.returncode != 0:
        raise CliError(f"Docker has no image '{image}'. Build it first (docker build -t {image} .).")
    target = directory / "image.tar"
    print(f"Exporting {image} with docker save ...", file=sys.stderr)
    saved = subprocess.run(["docker", "save", "-o", str(target), image], capture_output=True, text=True)
    if saved.returncode != 0:
        raise CliError(f"docker save failed: {saved.stderr.strip()}")
    return target


def _read_chunks(path: Path, bar: ProgressBar) -> Iterator[bytes]:
    with open(path, "rb") as tar:
        while chunk := tar.read(CHUNK_BYTES):
            bar.advance(len(chunk))
            yield chunk


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    algorithm = args.algorithm or args.image.split("/")[-1].split(":")[0]
    with tempfile.TemporaryDirectory(prefix="touchstone-") as tmp:
        tar = Path(args.image) if Path(args.image).is_file() else docker_save(args.image, Path(tmp))
        size = tar.stat().st_size
        bar = ProgressBar(total=size, label="Uploading", stream=sys.stderr)
        submission = client.request(
            "POST",
            f"phases/{args.phase}/submissions/",
            data=_read_chunks(tar, bar),
            headers={"Content-Type": "application/x-tar", "Content-Length": str(size),
                     "X-Touchstone-Algorithm": algorithm},
            timeout=None,
        )
        bar.finish()
    print(f"Submission {submission['id']} received: {submission['state_label']}. {submission['url']}")
    if args.wait:
        return wait_for(client, submission["id"], args.poll_s)
    print(f"Follow it with: touchstone status {submission['id']} --wait")
    return 0


def wait_for(client: Client, submission_id: int, poll_s: float) -> int:
    last = None
    while True:
        submission = client.get(f"submissions/{submission_id}/")
        line = progress_line(submission)
        if line != last:
            print(line, flush=True)
            last = line
        if submission["state"] in FINAL_STATES:
            print_submission(submission)
            return 0 if submission["state"] == "completed" else 1
        time.sleep(poll_s)


def progress_line(submission: dict) -> str:
    jobs = submission.get("jobs", [])
    done = sum(job["state"] in ("succeeded", "failed", "cancelled") for job in jobs)
    return f"[{time.strftime('%H:%M:%S')}] {submission['state_label']}: {done}/{len(jobs)} jobs done"


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    if args.wait:
        return wait_for(client, args.id, args.poll_s)
    print_submission(client.get(f"submissions/{args.id}/"))
    return 0


def print_submission(submission: dict) -> None:
    print(f"\nSubmission {submission['id']} — {submission['team']} / {submission['algorithm']} "
          f"on {submission['phase']}: {submission['state_label']}")
    if submission.get("failure_reason"):
        print(f"Why: {submission['failure_reason']}")
    rows = []
    for job in submission.get("jobs", []):
        outcome = job["exit_reason_label"] if job["exit_reason"] and job["exit_reason"] != "ok" else ""
        sentences = [outcome, job["detail"]] if outcome else []
        detail = " ".join(text if text.endswith(".") else f"{text}." for text in sentences if text)
        if outcome and job.get("last_output_line"):  # the container's own words, as written
            detail += f" Last line of its output: {job['last_output_line']}"
        seconds = f"{job['run_seconds']:.0f} s" if job.get("run_seconds") is not None else "-"
        rows.append([f"{job['index']}{' (canary)' if job['canary'] else ''}", job["state_label"], str(job["cases"]),
                     str(job["attempt"]), seconds, detail])
    if rows:
        print_table(["job", "state", "cases", "attempt", "run time", "problem"], rows)
    results = submission.get("results")
    if results:
        print(f"\nHeadline DSC {fmt_pct(results['dsc'])}   NSD {fmt_pct(results['nsd'])}")
        print_table(
            ["organ", "DSC", "NSD", "HD95 mm", "N", "failed"],
            [[o["organ"], fmt_pct(o["dsc"]), fmt_pct(o["nsd"]), fmt_num(o["hd95_mm"]), str(o["n"]), str(o["n_failed"])]
             for o in results["organs"]],
        )
        print_table(
            ["site", "cases", "failed", "DSC", "NSD"],
            [[s["name"] + (" (OOD)" if s["out_of_distribution"] else ""), str(s["cases"]), str(s["failed_cases"]),
              fmt_pct(s["dsc"]), fmt_pct(s["nsd"])] for s in results["sites"]],
        )
    print(f"\n{submission['url']}")


def cmd_results(client: Client, args: argparse.Namespace) -> int:
    submission = client.get(f"submissions/{args.id}/")
    if args.csv:
        cases = client.get(f"submissions/{args.id}/results/")["cases"]
        with open(args.csv, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(cases[0]) if cases else ["case__case_id"])
            writer.writeheader()
            writer.writerows(cases)
        print(f"Wrote {len(cases)} rows to {args.csv}")
    print_submission(submission)
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    for job in client.get(f"submissions/{args.id}/logs/")["jobs"]:
        print(f"=== job {job['index']} ({job['state_label']}) ===")
        print(job.get("log_tail") or "(no output)")
    return 0


def cmd_leaderboard(client: Client, args: argparse.Namespace) -> int:
    board = client.get(f"phases/{args.phase}/leaderboard/" + ("?statistics=full" if args.json else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(board, indent=1))
        print(f"Wrote the leaderboard and all its statistics to {args.json}")
    if not board["rows"]:
        print(f"No completed submission on {args.phase} yet.")
        return 0
    print(f"Leaderboard of {board['phase']} (computed {board['computed_at']})")
    print_leaderboard(board["rows"])
    parameters = board.get("parameters") or {}
    if parameters:
        print(f"[95% bootstrap CI, {parameters['n_bootstrap']} resamples within sites; rank range: where 95% of "
              f"the bootstrap rankings put it ({parameters['rank_method'].replace('_', ' ')})]")
    print(board["url"])
    return 0


def print_leaderboard(rows: list[dict]) -> None:
    organs = list(rows[0]["dsc"]["organs"])
    print_table(
        ["#", "team / algorithm", "DSC", "95% CI", "NSD", "95% CI", "ranks", *organs, "failed"],
        [[str(r["rank"]), r["name"], fmt_pct(r["dsc"]["headline"]), fmt_ci(r["dsc"].get("ci")),
          fmt_pct(r["nsd"]["headline"]), fmt_ci(r["nsd"].get("ci")), fmt_ranks(r.get("rank_range")),
          *[fmt_pct(r["dsc"]["organs"][o]["mean"]) for o in organs], str(r["failed_cases"])] for r in rows],
    )


# --- output helpers ---------------------------------------------------------------------------------
def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def fmt_ci(interval: list | None) -> str:
    if not interval or None in interval:
        return "-"
    return f"{100 * interval[0]:.1f}-{100 * interval[1]:.1f}"


def fmt_ranks(ranks: dict | None) -> str:
    if not ranks or ranks["low"] is None:
        return "-"
    return str(ranks["low"]) if ranks["low"] == ranks["high"] else f"{ranks['low']}-{ranks['high']}"


def fmt_num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(header: list[str], rows: list[list[str]], *, width: int | None = None) -> None:
    """Aligned columns; a long last column (a job's problem) wraps under itself to fit the terminal."""
    width = width or shutil.get_terminal_size((120, 24)).columns
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    indent = sum(widths[:-1]) + 2 * (len(widths) - 1)
    room = width - indent
    if widths and widths[-1] > room >= 30:
        widths[-1] = max(len(header[-1]), room)
    for index, row in enumerate([header, *rows]):
        *first, last = [str(cell) for cell in row]
        lines = textwrap.wrap(last, widths[-1]) or [""]
        print("  ".join([*(cell.ljust(w) for cell, w in zip(first, widths, strict=False)), lines[0]]).rstrip())
        for line in lines[1:]:
            print(" " * indent + line)
        if index == 0:
            print("  ".join("-" * w for w in widths))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="touchstone", description="Submit to and follow a Touchstone benchmark.")
    parser.add_argument("--server", help="platform URL (default: saved by login, or $TOUCHSTONE_SERVER)")
    parser.add_argument("--token", help="team API token (default: saved by login, or $TOUCHSTONE_TOKEN)")
    sub = parser.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login", help="check and save the server address and API token")
    login.add_argument("--server", dest="login_server", required=True)
    login.add_argument("--token", dest="login_token", required=True)
    sub.add_parser("phases", help="list the phases you can submit to")
    submit = sub.add_parser("submit", help="export a Docker image and submit it")
    submit.add_argument("image", help="a local image (name:tag) or a `docker save` tar file")
    submit.add_argument("--phase", required=True)
    submit.add_argument("--algorithm", help="name shown on the leaderboard (default: the image name)")
    submit.add_argument("--wait", action="store_true", help="follow the submission until it finishes")
    submit.add_argument("--poll-s", type=float, default=3.0)
    status = sub.add_parser("status", help="a submission's state, job by job")
    status.add_argument("id", type=int)
    status.add_argument("--wait", action="store_true")
    status.add_argument("--poll-s", type=float, default=3.0)
    results = sub.add_parser("results", help="a completed submission's scores")
    results.add_argument("id", type=int)
    results.add_argument("--csv", help="also write per-case, per-organ scores to this CSV file")
    logs = sub.add_parser("logs", help="container log tails, where the phase shares them")
    logs.add_argument("id", type=int)
    board = sub.add_parser("leaderboard", help="a phase's ranking")
    board.add_argument("phase")
    board.add_argument("--json", metavar="FILE", help="also save the whole snapshot (every statistic) as JSON")
    return parser


COMMANDS = {"phases": cmd_phases, "submit": cmd_submit, "status": cmd_status, "results": cmd_results,
            "logs": cmd_logs, "leaderboard": cmd_leaderboard}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "login":
            args.server, args.token = args.login_server, args.login_token
            return cmd_login(args)
        config = load_config()
        client = Client(args.server or config.get("server"), args.token or config.get("token"))
        return COMMANDS[args.command](client, args)
    except CliError as error:
        print(f"touchstone: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("touchstone: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
