"""Who sees what: the one place pages, the API and exports ask (DESIGN.md, "Who sees what").

| | anonymous | another team | own team | staff |
| published leaderboard | yes | yes | yes | yes |
| embargoed or private leaderboard | no | no | own rows | yes |
| a submission beyond its published row (jobs, reasons, unranked or failed runs) | no | no | yes | yes |
| per-case results | no | no | if the phase allows | yes |
| container logs, /output file names | no | no | if the phase shares logs | yes |
| engine errors | no | no | no | yes |

A viewer is a session user (team membership from `teams.models.Membership`), a team API token
(`api.authentication.TeamPrincipal`) or nobody. The public board of a phase is its latest publication
(frozen) if it was published, else the live snapshot when the phase is public, else nothing.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field

from benchmarks.models import Phase
from evaluator.stats.snapshot import Snapshot, SnapshotSchemaError
from leaderboards import selectors, services
from leaderboards.models import LeaderboardSnapshot
from submissions.models import Submission
from teams.models import Membership

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Viewer:
    """Whoever asks: the teams they act for, and whether they are staff."""

    team_ids: frozenset[int] = frozenset()
    is_staff: bool = False
    user_id: int | None = None

    def is_member(self, team_id: int) -> bool:
        return team_id in self.team_ids


ANONYMOUS = Viewer()
STAFF = Viewer(is_staff=True)


def viewer_for(request) -> Viewer:
    """The viewer of a Django or DRF request (a team token's team, or a session user's teams and staff flag)."""
    user = getattr(request, "user", None)
    team = getattr(user, "team", None)
    if team is not None:  # a team's API token
        return Viewer(team_ids=frozenset({team.pk}))
    if user is None or not getattr(user, "is_authenticated", False):
        return ANONYMOUS
    teams = frozenset(Membership.objects.filter(user_id=user.pk).values_list("team_id", flat=True))
    return Viewer(team_ids=teams, is_staff=bool(user.is_active and user.is_staff), user_id=user.pk)


def can_see_submission_details(viewer: Viewer, submission: Submission) -> bool:
    """Jobs, failure reasons, disqualification reasons, unranked or failed runs: its team and staff."""
    return viewer.is_staff or viewer.is_member(submission.team_id)


def can_see_case_results(viewer: Viewer, submission: Submission) -> bool:
    """Per-case rows: staff; the team only where the phase shares them (off for hidden test phases)."""
    return viewer.is_staff or (viewer.is_member(submission.team_id) and submission.phase.show_case_results)


def can_see_logs(viewer: Viewer, submission: Submission) -> bool:
    """Container log tails and `/output` file names: staff; the team only where the phase shares logs."""
    return viewer.is_staff or (viewer.is_member(submission.team_id) and submission.phase.show_logs)


def can_see_engine_errors(viewer: Viewer) -> bool:
    """The engine's or host's own words (`Job.platform_detail`): staff only."""
    return viewer.is_staff


class BoardScope(enum.Enum):
    FULL = "full"  # every row and the statistics
    OWN_ROWS = "own_rows"  # the viewer's teams' rows, no statistics, no ranks
    NONE = "none"


@dataclass(frozen=True)
class Board:
    """The leaderboard as one viewer may see it."""

    scope: BoardScope
    snapshot: LeaderboardSnapshot | None = None
    statistics: Snapshot | None = None
    rows: list[dict] = field(default_factory=list)

    @property
    def published(self) -> bool:
        return self.snapshot is not None and self.snapshot.is_published

    @property
    def submission_ids(self) -> set[int]:
        return {row["submission_id"] for row in self.rows}


def _statistics(snapshot: LeaderboardSnapshot) -> Snapshot | None:
    try:
        return selectors.snapshot_statistics(snapshot)  # parsed once per stored snapshot
    except SnapshotSchemaError as error:  # a frozen publication is never recomputed; its rows still show
        logger.warning("Published snapshot %s has statistics this version cannot read: %s", snapshot.pk, error)
        return None


def public_board(phase: Phase) -> Board:
    """What anyone may see: the latest publication, else the live board of a public phase, else nothing."""
    published = selectors.published_snapshot(phase=phase)
    if published is not None:
        return Board(BoardScope.FULL, published, _statistics(published), list(published.rows))
    if phase.leaderboard_visibility == Phase.Visibility.PUBLIC:
        snapshot, statistics = services.snapshot_current(phase=phase)
        return Board(BoardScope.FULL, snapshot, statistics, list(snapshot.rows) if snapshot else [])
    return Board(BoardScope.NONE)


def board_for(viewer: Viewer, phase: Phase) -> Board:
    """The leaderboard `viewer` may see. Staff: the live board. Others: the public board; on an embargoed or
    private phase not yet published, a team sees its own rows of the live board (without ranks or statistics,
    which describe the other teams)."""
    if viewer.is_staff:
        snapshot, statistics = services.snapshot_current(phase=phase)
        return Board(BoardScope.FULL, snapshot, statistics, list(snapshot.rows) if snapshot else [])
    board = public_board(phase)
    if board.scope is BoardScope.FULL or not viewer.team_ids:
        return board
    snapshot, _ = services.snapshot_current(phase=phase)
    if snapshot is None:
        return Board(BoardScope.OWN_ROWS)
    own = set(
        Submission.objects.filter(pk__in=snapshot.submission_ids, team_id__in=viewer.team_ids).values_list(
            "pk", flat=True
        )
    )
    rows = [{**row, "rank": None} for row in snapshot.rows if row["submission_id"] in own]
    return Board(BoardScope.OWN_ROWS, snapshot, None, rows)


def can_see_submission(viewer: Viewer, submission: Submission) -> bool:
    """A submission's page: its team and staff always; anyone else only if it is a row of the board they see."""
    if can_see_submission_details(viewer, submission):
        return True
    return submission.pk in board_for(viewer, submission.phase).submission_ids
