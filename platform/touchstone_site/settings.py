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
DEBUG = env_bool("TOUCHSTONE_DEBUG", True)
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
LOGIN_URL = "/admin/login/"

# --- Celery ---------------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", not CELERY_BROKER_URL)
CELERY_BROKER_URL = CELERY_BROKER_URL or "memory://"
CELERY_RESULT_BACKEND = None
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT_S", 6 * 3600)}

# --- Sandbox (how team containers run) -----------------------------------------------------------
# The OCI runtime for team containers: "runsc" (gVisor) where the host has it, "runc" otherwise.
SANDBOX_RUNTIME = env_str("TOUCHSTONE_SANDBOX_RUNTIME", "runsc")
# Docker's device-request driver for GPU phases ("nvidia" with the NVIDIA container toolkit).
SANDBOX_GPU_DRIVER = env_str("TOUCHSTONE_SANDBOX_GPU_DRIVER", "nvidia")
SANDBOX_PIDS_LIMIT = env_int("TOUCHSTONE_SANDBOX_PIDS_LIMIT", 256)
SANDBOX_TMPFS_MB = env_int("TOUCHSTONE_SANDBOX_TMPFS_MB", 1024)
SANDBOX_OUTPUT_MAX_BYTES = env_int("TOUCHSTONE_SANDBOX_OUTPUT_MAX_BYTES", 512 * 1024 * 1024)
SANDBOX_USER = env_str("TOUCHSTONE_SANDBOX_USER", "1000:1000")
SANDBOX_LOG_TAIL_BYTES = env_int("TOUCHSTONE_SANDBOX_LOG_TAIL_BYTES", 16 * 1024)
# Platform faults (Docker errors, a worker lost) are retried up to this many attempts per job.
JOB_MAX_ATTEMPTS = env_int("TOUCHSTONE_JOB_MAX_ATTEMPTS", 3)
# Processes used to score the cases of one job (0: one per core).
SCORING_PROCESSES = env_int("TOUCHSTONE_SCORING_PROCESSES", 0)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.authentication.TeamTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "UNAUTHENTICATED_USER": None,
}

if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("TOUCHSTONE_SECURE_SSL_REDIRECT", True)
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
