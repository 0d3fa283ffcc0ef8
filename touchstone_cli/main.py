"""`touchstone`: the team CLI. Talks HTTP to the platform only; never imports Django.

    touchstone login --server URL --token TOKEN [--ca-bundle PEM]   remember where and who you are
    touchstone phases                               what you can submit to
    touchstone validate IMAGE --phase SLUG          run IMAGE on the sample cases as the workers would
    touchstone submit IMAGE --phase SLUG [--wait]   docker save IMAGE and upload it (a rerun resumes)
    touchstone status ID [--watch]                  a submission's state, job by job
    touchstone results ID [--csv FILE]              per-organ and per-site scores
    touchstone logs ID                              container log tails (where the phase allows)
    touchstone leaderboard SLUG                     the phase's ranking
Every command takes --json: machine-readable output on stdout, and nothing else there.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import requests

from touchstone_cli.upload import ResumeState, Uploader, UploadError

CONFIG_PATH = Path(os.environ.get("TOUCHSTONE_CONFIG", Path.home() / ".config" / "touchstone" / "config.json"))
FINAL_STATES = {"completed", "failed", "cancelled"}
STDOUT = "-"  # `--json` with no file: the JSON goes to stdout


class CliError(Exception):
    """An error for the person at the terminal: what happened and what to do."""


# --- configuration and HTTP ------------------------------------------------------------------------
def load_config() -> dict[str, str]:
    config: dict[str, str] = {}
    if CONFIG_PATH.exists():
        try:
            config.update(json.loads(CONFIG_PATH.read_text()))
        except ValueError:
            raise CliError(f"{CONFIG_PATH} is not valid JSON. Delete it and run `touchstone login` again.") from None
    for key, variable in (("server", "TOUCHSTONE_SERVER"), ("token", "TOUCHSTONE_TOKEN")):
        if os.environ.get(variable):
            config[key] = os.environ[variable]
    return config


def certificate_check(ca_bundle: str | None) -> str | bool:
    """What requests should verify TLS with: the given CA bundle, else $REQUESTS_CA_BUNDLE, else the system's."""
    bundle = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if not bundle:
        return True
    if not Path(bundle).is_file():
        raise CliError(f"The CA bundle {bundle} does not exist. Pass the PEM file of your platform's CA.")
    return str(Path(bundle).resolve())


class Client:
    def __init__(self, server: str | None, token: str | None, timeout_s: float = 60.0,
                 ca_bundle: str | None = None):
        if not server:
            raise CliError("No server configured. Run `touchstone login --server URL --token TOKEN`.")
        if not token:
            raise CliError("No API token configured. Run `touchstone login --server URL --token TOKEN`.")
        self.server = server.rstrip("/")
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        # Passed with every request: requests lets $REQUESTS_CA_BUNDLE override a session's own `verify`.
        self.verify = certificate_check(ca_bundle)

    def url(self, path: str) -> str:
        return f"{self.server}/api/v1/{path.lstrip('/')}"

    def send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One HTTP exchange; connection errors are raised as requests' own (the uploader retries them)."""
        kwargs.setdefault("timeout", self.timeout_s)
        try:
            return self.session.request(method, self.url(path), verify=self.verify, **kwargs)
        except requests.exceptions.SSLError as error:
            raise CliError(
                f"The TLS certificate of {self.server} could not be verified ({error.__class__.__name__}). If the "
                "platform uses its own CA, pass its PEM file: `touchstone login --ca-bundle FILE ...` or "
                "REQUESTS_CA_BUNDLE=FILE."
            ) from None

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.send(method, path, **kwargs)
        except requests.ConnectionError:
            raise CliError(f"Cannot reach {self.server}. Is the server address right, and is it running?") from None
        except requests.Timeout:
            raise CliError(f"{self.server} did not answer in time. Try again later.") from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail") or response.text
            except (ValueError, AttributeError):
                detail = response.text[:300]
            raise CliError(f"{detail} (HTTP {response.status_code})")
        return response.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def get_all(self, path: str) -> list[Any]:
        """Every item of a paginated list ({count, next, previous, results}), following `next`."""
        page = self.get(path)
        items = list(page["results"])
        while page.get("next"):
            page = self.request("GET", page["next"].split("/api/v1/", 1)[1])
            items.extend(page["results"])
        return items


# --- commands ---------------------------------------------------------------------------------------
def cmd_login(args: argparse.Namespace) -> int:
    ca_bundle = str(Path(args.ca_bundle).resolve()) if args.ca_bundle else None
    client = Client(args.server, args.token, ca_bundle=ca_bundle)
    phases = client.get_all("phases/")  # proves the server, certificate and token work before saving them
    CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
    config = {"server": client.server, "token": args.token, **({"ca_bundle": ca_bundle} if ca_bundle else {})}
    CONFIG_PATH.write_text(json.dumps(config))
    CONFIG_PATH.chmod(0o600)
    emit(args, {"server": client.server, "phases": len(phases), "config": str(CONFIG_PATH), "ca_bundle": ca_bundle})
    print(f"Logged in to {client.server}; {len(phases)} phase(s) available. Saved to {CONFIG_PATH}.")
    return 0


def cmd_phases(client: Client, args: argparse.Namespace) -> int:
    phases = client.get_all("phases/")
    emit(args, phases)
    rows = [
        [p["slug"], p["name"], "open" if p["is_open"] else "closed", str(p["cases"]),
         f"{p['time_limit_per_case_s']} s/case", f"{p['memory_mb']} MB", "GPU" if p["gpu"] else "CPU",
         f"{p['submissions_per_day']}/day"]
        for p in phases
    ]
    print_table(["phase", "name", "state", "cases", "time", "memory", "device", "quota"], rows)
    return 0


def docker_save(image: str, directory: Path) -> Path:
    """`docker save IMAGE` to DIRECTORY/<image id>.tar, kept until its upload completes so a rerun resumes it.

    A tar already there for the same image id is reused (it is written under another name and renamed, so
    one that exists is whole); the size is known before the upload, so it can show progress.
    """
    if shutil.which("docker") is None:
        raise CliError("The docker command is not installed here; it is needed to export your image.")
    inspect = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", image],
                             capture_output=True, text=True)
    if inspect.returncode != 0:
        raise CliError(f"Docker has no image '{image}'. Build it first (docker build -t {image} .).")
    image_id = inspect.stdout.strip().split(":")[-1][:64]
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"{image_id}.tar"
    if target.is_file():
        print(f"Reusing the export of {image} from {target}", file=sys.stderr)
        return target
    partial = directory / f"{image_id}.tar.partial"
    print(f"Exporting {image} with docker save ...", file=sys.stderr)
    saved = subprocess.run(["docker", "save", "-o", str(partial), image], capture_output=True, text=True)
    if saved.returncode != 0:
        partial.unlink(missing_ok=True)
        raise CliError(f"docker save failed: {saved.stderr.strip()}")
    partial.rename(target)
    return target


def cmd_submit(client: Client, args: argparse.Namespace) -> int:
    algorithm = args.algorithm or args.image.split("/")[-1].split(":")[0]
    exported = not Path(args.image).is_file()
    tar = docker_save(args.image, CONFIG_PATH.parent / "exports") if exported else Path(args.image)
    uploader = Uploader(client, ResumeState(CONFIG_PATH.parent / "uploads.json"), stream=sys.stderr)
    try:
        submission = uploader.upload(path=tar, phase=args.phase, algorithm=algorithm)
    except UploadError as error:
        raise CliError(str(error)) from None
    if exported:
        tar.unlink(missing_ok=True)  # kept only while an upload of it might resume
    if args.wait:
        print(f"Submission {submission['id']} received: {submission['state_label']}. {submission['url']}")
        return wait_for(client, submission["id"], args.poll_s, args)
    emit(args, submission)
    print(f"Submission {submission['id']} received: {submission['state_label']}. {submission['url']}")
    print(f"Follow it with: touchstone status {submission['id']} --watch")
    return 0


def wait_for(client: Client, submission_id: int, poll_s: float, args: argparse.Namespace) -> int:
    """Follow a submission until it is final: a line (or, with --json, a JSON object) whenever it moves."""
    last = None
    while True:
        submission = client.get(f"submissions/{submission_id}/")
        line = progress_line(submission)
        if line != last:
            emit(args, submission)
            print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)
            last = line
        if submission["state"] in FINAL_STATES:
            print_submission(submission)
            return 0 if submission["state"] == "completed" else 1
        time.sleep(poll_s)


def progress_line(submission: dict) -> str:
    jobs = submission["jobs"]
    done = sum(job["state"] in ("succeeded", "failed", "cancelled") for job in jobs)
    running = sum(job["state"] in ("running", "scoring") for job in jobs)
    return f"{submission['state_label']}: {done}/{len(jobs)} jobs done, {running} running"


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    if args.watch:
        return wait_for(client, args.id, args.poll_s, args)
    submission = client.get(f"submissions/{args.id}/")
    emit(args, submission)
    print_submission(submission)
    return 0


def print_submission(submission: dict) -> None:
    print(f"\nSubmission {submission['id']} — {submission['team']} / {submission['algorithm']} "
          f"on {submission['phase']}: {submission['state_label']}")
    if submission["failure_reason"]:
        print(f"Why: {submission['failure_reason']}")
    rows = []
    for job in submission["jobs"]:
        outcome = job["exit_reason_label"] if job["exit_reason"] and job["exit_reason"] != "ok" else ""
        sentences = [outcome, job["detail"]] if outcome else []
        detail = " ".join(text if text.endswith(".") else f"{text}." for text in sentences if text)
        if outcome and job.get("last_output_line"):  # the container's own words, as written
            detail += f" Last line of its output: {job['last_output_line']}"
        seconds = f"{job['run_seconds']:.0f} s" if job["run_seconds"] is not None else "-"
        rows.append([f"{job['index']}{' (canary)' if job['canary'] else ''}", job["state_label"], str(job["cases"]),
                     str(job["attempt"]), seconds, detail])
    if rows:
        print_table(["job", "state", "cases", "attempt", "run time", "problem"], rows)
    results = submission.get("results")
    if results:
        print(f"\nHeadline DSC {fmt_pct(results['dsc'])}   NSD {fmt_pct(results['nsd'])}")
        print_table(
            ["organ", "DSC", "NSD", "HD95 mm", "N", "failed"],
            [[o["organ"], fmt_pct(o["dsc"]), fmt_pct(o["nsd"]), fmt_distance(o["hd95_mm"], o["hd95_n_infinite"]),
              str(o["n"]), str(o["n_failed"])] for o in results["organs"]],
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
    emit(args, submission)
    print_submission(submission)
    return 0


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    logs = client.get(f"submissions/{args.id}/logs/")
    emit(args, logs)
    for job in logs["jobs"]:
        print(f"=== job {job['index']} ({job['state_label']}) ===")
        print(job["log_tail"] or "(no output)")
    return 0


def cmd_leaderboard(client: Client, args: argparse.Namespace) -> int:
    board = client.get(f"phases/{args.phase}/leaderboard/" + ("?statistics=full" if args.json else ""))
    emit(args, board)
    if args.json and args.json != STDOUT:
        Path(args.json).write_text(json.dumps(board, indent=1))
        print(f"Wrote the leaderboard and all its statistics to {args.json}")
    if not board["rows"]:
        print(f"No completed submission on {args.phase} yet.")
        return 0
    print(f"Leaderboard of {board['phase']} (computed {board['computed_at']})")
    print_leaderboard(board["rows"])
    parameters = board["parameters"]  # {} before any statistics
    if parameters:
        print(f"[95% bootstrap CI, {parameters['n_bootstrap']} resamples within sites; rank range: where 95% of "
              f"the bootstrap rankings put it ({parameters['rank_method'].replace('_', ' ')})]")
    print(board["url"])
    return 0


def cmd_validate(client: Client, args: argparse.Namespace) -> int:
    # Imported here: it needs the `validate` extra (docker, nibabel, numpy), which the other commands do not.
    try:
        from touchstone_cli import validate
    except ImportError as missing:
        raise CliError(f"`touchstone validate` needs the validate extra ({missing.name} is missing): from a checkout "
                       "of the platform's repository, pip install '.[validate]'.") from None
    try:
        report = validate.validate_image(client=client, image=args.image, phase=args.phase,
                                         keep=Path(args.keep) if args.keep else None, runtime=args.runtime)
    except validate.ValidationError as error:
        raise CliError(str(error)) from None
    emit(args, report.to_json())
    print(report.render())
    return 0 if report.accepted else 1


def print_leaderboard(rows: list[dict]) -> None:
    organs = list(rows[0]["dsc"]["organs"])
    print_table(
        ["#", "team / algorithm", "DSC", "95% CI", "NSD", "95% CI", "ranks", *organs, "failed"],
        [[str(r["rank"]), r["name"], fmt_pct(r["dsc"]["headline"]), fmt_ci(r["dsc"]["ci"]),
          fmt_pct(r["nsd"]["headline"]), fmt_ci(r["nsd"]["ci"]), fmt_ranks(r["rank_range"]),
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


def fmt_distance(mean_mm: float | None, n_infinite: int) -> str:
    """A distance mean over the finite cases, with the cases whose distance is infinite (missed) beside it."""
    text = "-" if mean_mm is None else f"{mean_mm:.1f}"
    return f"{text} (+{n_infinite} missed)" if n_infinite else text


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
    parser.add_argument("--ca-bundle", dest="global_ca_bundle", metavar="FILE",
                        help="PEM file of the CA that signed the server's certificate (default: saved by login, "
                             "or $REQUESTS_CA_BUNDLE)")
    as_json = argparse.ArgumentParser(add_help=False)
    as_json.add_argument("--json", action="store_const", const=STDOUT,
                         help="print machine-readable JSON to stdout (and nothing else there)")
    sub = parser.add_subparsers(dest="command", required=True)
    login = sub.add_parser("login", parents=[as_json], help="check and save the server address and API token")
    login.add_argument("--server", dest="login_server", required=True)
    login.add_argument("--token", dest="login_token", required=True)
    login.add_argument("--ca-bundle", metavar="FILE",
                       help="PEM file of the CA that signed the server's certificate (saved with the login)")
    sub.add_parser("phases", parents=[as_json], help="list the phases you can submit to")
    submit = sub.add_parser("submit", parents=[as_json],
                            help="export a Docker image and upload it (a rerun resumes an interrupted upload)")
    submit.add_argument("image", help="a local image (name:tag) or a `docker save` tar file")
    submit.add_argument("--phase", required=True)
    submit.add_argument("--algorithm", help="name shown on the leaderboard (default: the image name)")
    submit.add_argument("--wait", "--watch", dest="wait", action="store_true",
                        help="follow the submission until it finishes")
    submit.add_argument("--poll-s", type=float, default=3.0)
    status = sub.add_parser("status", parents=[as_json], help="a submission's state, job by job")
    status.add_argument("id", type=int)
    status.add_argument("--watch", "--wait", dest="watch", action="store_true",
                        help="follow it until it finishes (with --json: one JSON object per change)")
    status.add_argument("--poll-s", type=float, default=3.0)
    results = sub.add_parser("results", parents=[as_json], help="a completed submission's scores")
    results.add_argument("id", type=int)
    results.add_argument("--csv", help="also write per-case, per-organ scores to this CSV file")
    logs = sub.add_parser("logs", parents=[as_json], help="container log tails, where the phase shares them")
    logs.add_argument("id", type=int)
    board = sub.add_parser("leaderboard", help="a phase's ranking")
    board.add_argument("phase")
    board.add_argument("--json", nargs="?", const=STDOUT, metavar="FILE",
                       help="the whole snapshot (every statistic) as JSON: to stdout, or saved to FILE")
    validate = sub.add_parser("validate", parents=[as_json],
                              help="run an image on the phase's sample cases as the workers would, and check its output")
    validate.add_argument("image", help="a local Docker image (name:tag)")
    validate.add_argument("--phase", required=True)
    validate.add_argument("--keep", metavar="DIR", help="keep the inputs and outputs of the run in DIR")
    validate.add_argument("--runtime", help="Docker runtime (default: the workers' runsc, or runc on a GPU phase)")
    return parser


COMMANDS = {"phases": cmd_phases, "submit": cmd_submit, "status": cmd_status, "results": cmd_results,
            "logs": cmd_logs, "leaderboard": cmd_leaderboard, "validate": cmd_validate}


def emit(args: argparse.Namespace, data: Any) -> None:
    """With --json: one JSON document on a line of the real stdout (human text goes nowhere meanwhile)."""
    stream = getattr(args, "json_stream", None)
    if stream is not None:
        stream.write(json.dumps(data, default=str) + "\n")
        stream.flush()


def run_command(args: argparse.Namespace) -> int:
    if args.command == "login":
        args.server, args.token = args.login_server, args.login_token
        return cmd_login(args)
    config = load_config()
    client = Client(args.server or config.get("server"), args.token or config.get("token"),
                    ca_bundle=args.global_ca_bundle or config.get("ca_bundle"))
    return COMMANDS[args.command](client, args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.json_stream = sys.stdout if getattr(args, "json", None) == STDOUT else None
    try:
        if args.json_stream is None:
            return run_command(args)
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
            return run_command(args)
    except CliError as error:
        print(f"touchstone: {error}", file=sys.stderr)
        emit(args, {"error": str(error)})
        return 2
    except KeyboardInterrupt:
        print("touchstone: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
