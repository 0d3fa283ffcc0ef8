"""Settings, read from the environment with typed, documented defaults.

With nothing set, the platform runs as the embedded default of `make demo`: SQLite and Celery in
eager mode. Production and the integration tests set DATABASE_URL and CELERY_BROKER_URL to real
PostgreSQL and Redis. A malformed value fails at start-up with the variable's name.
"""

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean: use true or false")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


# --- Core -----------------------------------------------------------------------------------------
# Off unless asked for: its error pages show settings and code. `make demo` and `make test` turn it on.
DEBUG = env_bool("TOUCHSTONE_DEBUG", False)
SECRET_KEY = env_str("TOUCHSTONE_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("TOUCHSTONE_SECRET_KEY must be set when TOUCHSTONE_DEBUG is false")
    SECRET_KEY = "insecure-development-key-only-for-the-embedded-demo"
ALLOWED_HOSTS = env_list("TOUCHSTONE_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("TOUCHSTONE_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "benchmarks",
    "teams",
    "submissions",
    "leaderboards",
    "dashboard",
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "touchstone_site.urls"
WSGI_APPLICATION = "touchstone_site.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "platform" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

# --- Storage --------------------------------------------------------------------------------------
# DATA_ROOT holds hidden cases, uploaded images, job inputs and outputs. Never served over HTTP.
DATA_ROOT = Path(env_str("DATA_ROOT", str(BASE_DIR / "var" / "data"))).resolve()

DATABASE_URL = env_str("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": Path(env_str("TOUCHSTONE_SQLITE_PATH", str(BASE_DIR / "var" / "touchstone.sqlite3"))),
            "OPTIONS": {"timeout": 30},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("TOUCHSTONE_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "platform" / "static"]

# Uploaded docker-save tars are streamed to disk, never held in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 8 * 1024 * 1024
MAX_IMAGE_UPLOAD_BYTES = env_int("TOUCHSTONE_MAX_IMAGE_UPLOAD_BYTES", 30 * 1024**3)
# Caps on one image, checked by reading the tar before Docker sees it (submissions/image_check.py):
# layers in the manifest; the layer blobs as stored in the tar; the layers decompressed (each layer is
# streamed through its decompressor and counted, so a compression bomb stops at this cap, on no disk).
IMAGE_MAX_LAYERS = env_int("TOUCHSTONE_IMAGE_MAX_LAYERS", 100)
IMAGE_MAX_COMPRESSED_BYTES = env_int("TOUCHSTONE_IMAGE_MAX_COMPRESSED_BYTES", 30 * 1024**3)
IMAGE_MAX_UNPACKED_BYTES = env_int("TOUCHSTONE_IMAGE_MAX_UNPACKED_BYTES", 50 * 1024**3)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
LOGIN_URL = "portal-login"
LOGIN_REDIRECT_URL = "portal-home"
LOGOUT_REDIRECT_URL = "home"

# --- Email (password resets) -----------------------------------------------------------------------
# Printed to the console by default; set TOUCHSTONE_EMAIL_HOST to send through SMTP.
EMAIL_HOST = env_str("TOUCHSTONE_EMAIL_HOST", "")
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
EMAIL_PORT = env_int("TOUCHSTONE_EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("TOUCHSTONE_EMAIL_USER", "")
EMAIL_HOST_PASSWORD = env_str("TOUCHSTONE_EMAIL_PASSWORD", "")
EMAIL_USE_TLS = env_bool("TOUCHSTONE_EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("TOUCHSTONE_EMAIL_FROM", "touchstone@localhost")
# Team invitation links stay valid this many days.
INVITATION_DAYS = env_int("TOUCHSTONE_INVITATION_DAYS", 7)

# --- Cache -----------------------------------------------------------------------------------------
# What pages derive from a stored snapshot (its figures) is cached by snapshot id. A Redis URL shares that
# across every web process and survives their restarts; without one, each process keeps its own copy.
TOUCHSTONE_CACHE_URL = env_str("TOUCHSTONE_CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": TOUCHSTONE_CACHE_URL}
    if TOUCHSTONE_CACHE_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message at a time per process: a GPU job runs for hours, and a prefetched message would wait behind
# it on this host while another host sits idle.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
# Redis redelivers an unacknowledged message after this long, even if its task still runs: keep it above
# the longest job (the largest phase's time limit plus image load). A redelivery past it is harmless (the
# claim is a compare-and-set) but wastes a message; the lease, not the broker, decides a job is lost.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 24 * 3600)}
# Scoring holds whole CT volumes in numpy arrays and forks processes: a fresh child after this many tasks
# hands fragmented memory back to the host.
CELERY_WORKER_MAX_TASKS_PER_CHILD = env_int("CELERY_WORKER_MAX_TASKS_PER_CHILD", 20)
# A worker loses its broker when Redis restarts: keep reconnecting at start-up too, never exit.
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None

# --- Recovery (leases and the sweep; see DESIGN.md "Failures and recovery") ------------------------
# A claimed job's lease: its worker renews it every JOB_LEASE_S / 4 while the container runs; once it has
# expired the sweep takes the job back (worker lost) and each inference worker reaps its container.
JOB_LEASE_S = env_int("TOUCHSTONE_JOB_LEASE_S", 120)
# How often the beat runs the sweep (on the `control` queue).
SWEEP_INTERVAL_S = env_int("TOUCHSTONE_SWEEP_INTERVAL_S", 60)
CELERY_BEAT_SCHEDULE = {
    # Recovers every non-final state (DESIGN.md, "Failures and recovery"); two beats at once are harmless.
    "sweep": {"task": "touchstone.sweep_states", "schedule": float(SWEEP_INTERVAL_S)},
    # Retention of uploads (see the RETENTION_* settings below; images and job folders: each inference host).
    "cleanup": {"task": "touchstone.cleanup", "schedule": 24 * 3600.0},
}
# A QUEUED job waiting this long while no job holds a live lease (workers idle) lost its message: re-sent.
# Past SWEEP_QUEUED_MAX_WAIT_S it is re-sent even while others run (a duplicate message is harmless).
SWEEP_QUEUED_AFTER_S = env_int("TOUCHSTONE_SWEEP_QUEUED_AFTER_S", 10 * 60)
SWEEP_QUEUED_MAX_WAIT_S = env_int("TOUCHSTONE_SWEEP_QUEUED_MAX_WAIT_S", 6 * 3600)
# A VALIDATING submission whose message was sent this long ago (above the validation task's limit) is re-sent.
SWEEP_VALIDATING_AFTER_S = env_int("TOUCHSTONE_SWEEP_VALIDATING_AFTER_S", 35 * 60)
# Scoring one job must finish within this; past it the sweep re-sends it (or fails it, platform-side).
SCORING_DEADLINE_S = env_int("TOUCHSTONE_SCORING_DEADLINE_S", 2 * 3600)
# After a long container run the database may have restarted: wait this long for it before giving up.
DATABASE_RECONNECT_WAIT_S = env_int("TOUCHSTONE_DATABASE_RECONNECT_WAIT_S", 120)

# --- Retention (`manage.py cleanup`, also run daily by beat) ----------------------------------------
# Docker images of failed, cancelled and superseded submissions are removed this many days after their
# last submission ended; the uploaded tar stays (a rerun loads it again) unless the image was refused.
RETENTION_IMAGE_DAYS = env_int("TOUCHSTONE_RETENTION_IMAGE_DAYS", 7)
# Refused or unused uploaded tars, and `.part` files of uploads cut short, are removed after this many hours.
RETENTION_UPLOAD_HOURS = env_int("TOUCHSTONE_RETENTION_UPLOAD_HOURS", 24)
# Raw /input and /output folders and earlier attempts' folders of final jobs go after this many hours;
# collected predictions are kept RETENTION_PREDICTIONS_DAYS days (0: forever).
RETENTION_RAW_OUTPUT_HOURS = env_int("TOUCHSTONE_RETENTION_RAW_OUTPUT_HOURS", 1)
RETENTION_PREDICTIONS_DAYS = env_int("TOUCHSTONE_RETENTION_PREDICTIONS_DAYS", 0)
# Each inference worker removes its engine's old images and ended jobs' folders this often (it runs as root
# and owns both; the daily beat task on the control worker removes stale uploads).
RETENTION_HOST_INTERVAL_S = env_int("TOUCHSTONE_RETENTION_HOST_INTERVAL_S", 6 * 3600)

# --- Sandbox (how team containers run) -----------------------------------------------------------
# The OCI runtime for team containers: "runsc" (gVisor) where the host has it, "runc" otherwise.
SANDBOX_RUNTIME = env_str("TOUCHSTONE_SANDBOX_RUNTIME", "runsc")
# Docker's device-request driver for GPU phases ("nvidia" with the NVIDIA container toolkit).
SANDBOX_GPU_DRIVER = env_str("TOUCHSTONE_SANDBOX_GPU_DRIVER", "nvidia")
# GPU phases run under this runtime: this gVisor has no nvproxy, so a GPU container runs under runc with
# every other hardening kept (see README, "The container contract").
SANDBOX_GPU_RUNTIME = env_str("TOUCHSTONE_SANDBOX_GPU_RUNTIME", "runc")
# Processes plus threads a container may hold. gVisor enforces it inside the sandbox as the `nproc` ulimit;
# under runc it is the cgroup's pids limit (nproc there would count every uid-1000 process on the host).
SANDBOX_NPROC = env_int("TOUCHSTONE_SANDBOX_NPROC", 1024)
# Under gVisor the cgroup's pids limit counts gVisor's own host threads, not the team's processes: it is
# only a backstop far above what SANDBOX_NPROC tasks need.
SANDBOX_PIDS_LIMIT = env_int("TOUCHSTONE_SANDBOX_PIDS_LIMIT", 16384)
SANDBOX_TMPFS_MB = env_int("TOUCHSTONE_SANDBOX_TMPFS_MB", 1024)
# Every VOLUME an image declares is covered by a tmpfs of this size (no anonymous volume is ever made).
SANDBOX_VOLUME_TMPFS_MB = env_int("TOUCHSTONE_SANDBOX_VOLUME_TMPFS_MB", 64)
SANDBOX_SHM_MB = env_int("TOUCHSTONE_SANDBOX_SHM_MB", 256)
# /output is a per-attempt ext4 filesystem of this many bytes and files, loop-mounted by the worker (root).
SANDBOX_OUTPUT_MAX_BYTES = env_int("TOUCHSTONE_SANDBOX_OUTPUT_MAX_BYTES", 512 * 1024 * 1024)
SANDBOX_OUTPUT_MAX_FILES = env_int("TOUCHSTONE_SANDBOX_OUTPUT_MAX_FILES", 1000)
# false only on a development machine whose worker is not root: /output is then a plain, uncapped folder.
SANDBOX_CAPPED_OUTPUT = env_bool("TOUCHSTONE_SANDBOX_CAPPED_OUTPUT", True)
# The engine keeps at most two json-file logs of this size per container (the tail is all the platform reads).
SANDBOX_LOG_MAX_BYTES = env_int("TOUCHSTONE_SANDBOX_LOG_MAX_BYTES", 1024 * 1024)
SANDBOX_USER = env_str("TOUCHSTONE_SANDBOX_USER", "1000:1000")
SANDBOX_LOG_TAIL_BYTES = env_int("TOUCHSTONE_SANDBOX_LOG_TAIL_BYTES", 16 * 1024)
# Job containers are named <prefix>-<job id>-<attempt>; a worker reaps only containers with its own prefix,
# so two deployments (or test sessions) sharing one engine never remove each other's.
SANDBOX_CONTAINER_PREFIX = env_str("TOUCHSTONE_SANDBOX_CONTAINER_PREFIX", "touchstone-job")
# Platform faults (Docker errors, a worker lost) are retried up to this many attempts per job.
JOB_MAX_ATTEMPTS = env_int("TOUCHSTONE_JOB_MAX_ATTEMPTS", 3)
# A retried attempt is sent this many seconds times its attempt number later (a restarting engine settles).
JOB_RETRY_DELAY_S = env_int("TOUCHSTONE_JOB_RETRY_DELAY_S", 10)
# Processes used to score the cases of one job (0: one per core).
SCORING_PROCESSES = env_int("TOUCHSTONE_SCORING_PROCESSES", 0)

# Requests per API token (or per signed-in portal user); a chunked upload's PUTs have their own budget.
API_RATE_PER_TOKEN = env_str("TOUCHSTONE_API_RATE_PER_TOKEN", "600/minute")
API_UPLOAD_RATE_PER_TOKEN = env_str("TOUCHSTONE_API_UPLOAD_RATE_PER_TOKEN", "6000/minute")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.TeamTokenAuthentication",
        "api.authentication.PortalSessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "api.permissions.TokenScope"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Touchstone API",
    "DESCRIPTION": "Submit containerized segmentation algorithms, follow them and read their scores. "
    "Authenticate with `Authorization: Bearer <team token>`; every error body is `{\"detail\": ...}`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "SubmissionStateEnum": "submissions.models.Submission.State",
        "JobStateEnum": "submissions.models.Job.State",
        "UploadStateEnum": ["receiving", "complete"],
    },
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("TOUCHSTONE_SECURE_SSL_REDIRECT", True)
    # Container healthchecks reach gunicorn directly over HTTP; everything else is redirected to HTTPS.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("TOUCHSTONE_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("TOUCHSTONE_LOG_LEVEL", "INFO")},
}
