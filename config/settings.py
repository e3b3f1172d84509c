"""Fairway settings: one module, every knob read from the environment.

Embedded default (nothing set): SQLite under var/, local-memory cache, in-memory channel layer,
the bundled SmolLM2 model. Production: DATABASE_URL=postgres://…, REDIS_URL=redis://…,
FAIRWAY_SECRET_KEY, FAIRWAY_KEY_PEPPER and FAIRWAY_INFERENCE_TOKEN set explicitly.
"""

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FAIRWAY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    return default if raw is None else raw.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return default if raw in (None, "") else int(raw)


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def dev_secret(name: str) -> str:
    """A per-installation random secret under var/, for the embedded default only.

    Production sets the variable; the file keeps development restarts stable without
    committing any secret to the repository.
    """
    path = VAR_DIR / "secrets" / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
    return path.read_text().strip()


DEBUG = env_bool("FAIRWAY_DEBUG", False)
SECRET_KEY = os.environ.get("FAIRWAY_SECRET_KEY") or dev_secret("django_secret_key")
ALLOWED_HOSTS = env_list("FAIRWAY_ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "channels",
    "tenants",
    "gateway",
    "billing",
    "inference",
    "conversations",
]

MIDDLEWARE = [
    "gateway.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

# --- Data stores -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "fairway.sqlite3",
            # WAL + a busy timeout let the gateway and management commands share the file.
            "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
            # A file (not :memory:) so end-to-end tests can share the test database with real processes.
            "TEST": {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")},
        }
    }

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": "fw"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer",
                                  "CONFIG": {"hosts": [REDIS_URL], "prefix": "fw:ch"}}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "fairway"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Threads (each with one persistent connection) for the gateway's request-path database lookups
# (config/dbthread.py); with the usage writer's thread, a gateway process holds this many + 1.
FAIRWAY_DB_THREADS = env_int("FAIRWAY_DB_THREADS", 4)

# --- Web ---------------------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024  # 1 MiB request bodies; larger → 413
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = env_bool("FAIRWAY_SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["tenants.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "EXCEPTION_HANDLER": "gateway.errors.drf_exception_handler",
    "UNAUTHENTICATED_USER": None,
}

# --- Fairway -----------------------------------------------------------------------------------
# HMAC pepper for API key secrets; changing it invalidates every key.
FAIRWAY_KEY_PEPPER = os.environ.get("FAIRWAY_KEY_PEPPER") or dev_secret("key_pepper")
# Shared secret between gateway and inference service.
FAIRWAY_INFERENCE_TOKEN = os.environ.get("FAIRWAY_INFERENCE_TOKEN") or dev_secret("inference_token")
FAIRWAY_INFERENCE_URL = os.environ.get("FAIRWAY_INFERENCE_URL", "http://127.0.0.1:8001")
FAIRWAY_UPSTREAM_CONNECT_TIMEOUT = float(os.environ.get("FAIRWAY_UPSTREAM_CONNECT_TIMEOUT", "2"))
FAIRWAY_UPSTREAM_READ_TIMEOUT = float(os.environ.get("FAIRWAY_UPSTREAM_READ_TIMEOUT", "120"))
# API keys: coarse last_used_at updates (seconds between writes per key) and auth cache TTL.
FAIRWAY_KEY_LAST_USED_INTERVAL = env_int("FAIRWAY_KEY_LAST_USED_INTERVAL", 300)
FAIRWAY_KEY_CACHE_SECONDS = env_int("FAIRWAY_KEY_CACHE_SECONDS", 30)
# Failed authentications per client address before it is slowed (429) for the window.
FAIRWAY_AUTH_FAILURE_LIMIT = env_int("FAIRWAY_AUTH_FAILURE_LIMIT", 20)
FAIRWAY_AUTH_FAILURE_WINDOW = env_int("FAIRWAY_AUTH_FAILURE_WINDOW", 60)

# Inference service (read by `manage.py runinference`; the gateway never loads torch).
FAIRWAY_MODEL_PATH = os.environ.get("FAIRWAY_MODEL_PATH", "")  # HF directory or .gguf file; "" = bundled
FAIRWAY_MODEL_NAME = os.environ.get("FAIRWAY_MODEL_NAME", "")  # served name; "" = derived from the model
FAIRWAY_MODEL_CACHE_DIR = Path(os.environ.get("FAIRWAY_MODEL_CACHE_DIR", VAR_DIR / "models"))
FAIRWAY_DEVICE = os.environ.get("FAIRWAY_DEVICE", "")  # "" = cuda when available, else cpu
FAIRWAY_TORCH_THREADS = env_int("FAIRWAY_TORCH_THREADS", 0)  # 0 = torch default

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "gateway.middleware.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": os.environ.get("FAIRWAY_LOG_LEVEL", "INFO")},
    "loggers": {"django.request": {"level": "ERROR"}},
}

# Inference engine (see README "Engine settings"); unset values take the engine's defaults.
FAIRWAY_INFERENCE_HOST = os.environ.get("FAIRWAY_INFERENCE_HOST", "127.0.0.1")
FAIRWAY_INFERENCE_PORT = env_int("FAIRWAY_INFERENCE_PORT", 8001)
FAIRWAY_ENGINE = {
    name: value
    for name, value in {
        "max_num_seqs": os.environ.get("FAIRWAY_MAX_NUM_SEQS"),
        "kv_cache_tokens": os.environ.get("FAIRWAY_KV_CACHE_TOKENS"),
        "max_prefill_tokens_per_step": os.environ.get("FAIRWAY_MAX_PREFILL_TOKENS"),
        "max_queue_per_tenant": os.environ.get("FAIRWAY_MAX_QUEUE_PER_TENANT"),
        "max_queue_total": os.environ.get("FAIRWAY_MAX_QUEUE_TOTAL"),
        "max_queue_wait_s": os.environ.get("FAIRWAY_MAX_QUEUE_WAIT"),
        "policy": os.environ.get("FAIRWAY_SCHEDULER_POLICY"),
        "batch_invariant": os.environ.get("FAIRWAY_BATCH_INVARIANT"),
        "max_model_len": os.environ.get("FAIRWAY_MAX_MODEL_LEN"),
    }.items()
    if value not in (None, "")
}

# --- Conversations encryption ------------------------------------------------------------------
# Envelope encryption of stored conversations (README "Encryption at rest"). FAIRWAY_KEKS is
# "id:<base64 of 32 bytes>,…", first = primary. Only the embedded default (no DATABASE_URL) may run
# without it: a development KEK is generated into var/secrets/ (the app logs that it did). With
# DATABASE_URL set and no FAIRWAY_KEKS, the conversations app refuses to start. The test suite is
# treated like the embedded default even on PostgreSQL (its database is throwaway).


def _dev_kek() -> tuple[str, str]:
    import base64

    path = VAR_DIR / "secrets" / "conversations_kek"
    if path.exists():
        return path.read_text().strip(), "dev-file"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = f"dev1:{base64.b64encode(secrets.token_bytes(32)).decode()}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its key
        return path.read_text().strip(), "dev-file"
    with os.fdopen(fd, "w") as handle:
        handle.write(line)
    return line, "generated"


FAIRWAY_KEKS = os.environ.get("FAIRWAY_KEKS", "").strip()
FAIRWAY_KEKS_SOURCE = "env" if FAIRWAY_KEKS else "unset"
if not FAIRWAY_KEKS and (not DATABASE_URL or "pytest" in __import__("sys").modules):
    FAIRWAY_KEKS, FAIRWAY_KEKS_SOURCE = _dev_kek()
# Unwrapped DEKs stay in process memory (never Redis) this long.
FAIRWAY_DEK_CACHE_SECONDS = env_int("FAIRWAY_DEK_CACHE_SECONDS", 60)
# Turn lock lease; renewed while a generation runs, so a crashed worker frees the conversation soon.
FAIRWAY_CONVERSATION_LOCK_SECONDS = env_int("FAIRWAY_CONVERSATION_LOCK_SECONDS", 30)
FAIRWAY_CONVERSATION_MAX_MESSAGE_CHARS = env_int("FAIRWAY_CONVERSATION_MAX_MESSAGE_CHARS", 32_768)
# Tokens kept free for the reply when a request with `conversation` gives no max_tokens.
FAIRWAY_CONVERSATION_REPLY_RESERVE = env_int("FAIRWAY_CONVERSATION_REPLY_RESERVE", 256)

# --- Inference replicas (README "Scaling out") ---------------------------------------------------
# Static replica list (comma-separated URLs); empty = the single FAIRWAY_INFERENCE_URL.
FAIRWAY_INFERENCE_URLS = env_list("FAIRWAY_INFERENCE_URLS")
# Redis registry replicas heartbeat into and gateways read (opt-in: unset = static list only).
FAIRWAY_REPLICA_REGISTRY_URL = os.environ.get("FAIRWAY_REPLICA_REGISTRY_URL", "")
# The URL this inference replica advertises in the registry (default http://<host>:<port>).
FAIRWAY_REPLICA_ADVERTISE_URL = os.environ.get("FAIRWAY_REPLICA_ADVERTISE_URL", "")
FAIRWAY_REPLICA_REFRESH_SECONDS = float(os.environ.get("FAIRWAY_REPLICA_REFRESH_SECONDS", "1"))
FAIRWAY_REPLICA_DOWN_SECONDS = float(os.environ.get("FAIRWAY_REPLICA_DOWN_SECONDS", "5"))
# How often a replica renews its registry entry and reads its peers' fair-share figures; each
# replica sees the others' service at most about two periods late (the error bound grows with it).
FAIRWAY_REPLICA_HEARTBEAT_SECONDS = float(os.environ.get("FAIRWAY_REPLICA_HEARTBEAT_SECONDS", "0.5"))
# Replicas of one model share their per-tenant fair-share counters through the registry
# (inference/fairshare.py); off: each replica is fair on its own counters only.
FAIRWAY_FAIR_SHARE_ACROSS_REPLICAS = env_bool("FAIRWAY_FAIR_SHARE_ACROSS_REPLICAS", True)
# Seconds a stopping process (gateway or replica) lets open streams finish.
FAIRWAY_SHUTDOWN_GRACE_SECONDS = env_int("FAIRWAY_SHUTDOWN_GRACE_SECONDS", 30)

# --- Dashboard ---------------------------------------------------------------------------------
# Operator dashboard (dashboard/), audit log (audit/), admin login hardening. The default admin site
# becomes dashboard's FairwayAdminSite (login lockout + audited logins): Django's documented way to
# override it is to replace the admin app entry with an AdminConfig naming the site class.
INSTALLED_APPS[INSTALLED_APPS.index("django.contrib.admin")] = "dashboard.apps.FairwayAdminConfig"
INSTALLED_APPS += ["audit", "dashboard"]
LOGIN_URL = "admin:login"
# Failed admin logins per (username, client address) before that pair is locked out for the window;
# a per-address ceiling also stops spraying many usernames from one address. Cache-based (Redis in prod).
FAIRWAY_LOGIN_FAILURE_LIMIT = env_int("FAIRWAY_LOGIN_FAILURE_LIMIT", 5)
FAIRWAY_LOGIN_ADDRESS_FAILURE_LIMIT = env_int("FAIRWAY_LOGIN_ADDRESS_FAILURE_LIMIT", 50)
FAIRWAY_LOGIN_LOCKOUT_SECONDS = env_int("FAIRWAY_LOGIN_LOCKOUT_SECONDS", 900)
# Live page: how often the inference service's /health is polled and pushed to open dashboards.
FAIRWAY_DASHBOARD_LIVE_INTERVAL = float(os.environ.get("FAIRWAY_DASHBOARD_LIVE_INTERVAL", "1.0"))
# Operator sessions: HttpOnly cookies (no script reads them), 8 h lifetime, Secure with FAIRWAY_SECURE_COOKIES.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True  # forms carry the token; no script needs the cookie
SESSION_COOKIE_AGE = env_int("FAIRWAY_SESSION_SECONDS", 8 * 3600)
CSRF_TRUSTED_ORIGINS = env_list("FAIRWAY_CSRF_TRUSTED_ORIGINS")  # e.g. https://fairway.example.com
X_FRAME_OPTIONS = "DENY"

# --- Quotas & billing --------------------------------------------------------------------------
# Limits per plan (overridable per tenant): requests/min per tenant and key (django-ratelimit on the
# cache), tokens/min, monthly token budget and concurrent requests (a quota backend). See
# gateway/quotas/ and billing/ (README "Quotas, usage and billing").
INSTALLED_APPS += ["gateway.quotas"]
# "redis" (default when REDIS_URL is set) or "database" (the embedded default), or a dotted class path.
FAIRWAY_QUOTA_BACKEND = os.environ.get("FAIRWAY_QUOTA_BACKEND", "redis" if REDIS_URL else "database")
FAIRWAY_QUOTA_REDIS_URL = os.environ.get("FAIRWAY_QUOTA_REDIS_URL", REDIS_URL)
# A request's hold (tokens + concurrency slot) lapses this long after its gateway stops renewing it.
FAIRWAY_QUOTA_LEASE_SECONDS = env_int("FAIRWAY_QUOTA_LEASE_SECONDS", 60)
FAIRWAY_QUOTA_RENEW_SECONDS = float(os.environ.get("FAIRWAY_QUOTA_RENEW_SECONDS", "20"))
# Idempotency-Key: results kept this long; a retry waits this long for a first attempt still running.
FAIRWAY_IDEMPOTENCY_TTL_SECONDS = env_int("FAIRWAY_IDEMPOTENCY_TTL_SECONDS", 24 * 3600)
FAIRWAY_IDEMPOTENCY_WAIT_SECONDS = float(os.environ.get("FAIRWAY_IDEMPOTENCY_WAIT_SECONDS", "30"))
FAIRWAY_BILLING_CURRENCY = os.environ.get("FAIRWAY_BILLING_CURRENCY", "USD")
# Final usage records commit synchronously (flushed) before the client gets its last bytes. Off: one
# fsync less per request, but a PostgreSQL crash may lose the last few hundred ms of billing.
FAIRWAY_USAGE_SYNC_COMMIT = env_bool("FAIRWAY_USAGE_SYNC_COMMIT", True)
FAIRWAY_USAGE_MAX_DAYS = env_int("FAIRWAY_USAGE_MAX_DAYS", 366)  # widest /v1/usage date range
RATELIMIT_USE_CACHE = "default"
RATELIMIT_CACHE_PREFIX = "fw:rl:"
if REDIS_URL:  # one pool per process instead of one connection per request (see gateway/quotas/cache.py)
    CACHES["default"]["BACKEND"] = "gateway.quotas.cache.PooledRedisCache"

# --- Production mode (README "Production") -----------------------------------------------------
# FAIRWAY_ENV=production: secrets must come from the environment (never generated), debug off,
# HTTPS-only cookies and HSTS, JSON logs. `manage.py check --deploy` is clean in this mode.
FAIRWAY_ENV = os.environ.get("FAIRWAY_ENV", "development")
if FAIRWAY_ENV == "production":
    from django.core.exceptions import ImproperlyConfigured

    _required = ["FAIRWAY_SECRET_KEY", "FAIRWAY_KEY_PEPPER", "FAIRWAY_INFERENCE_TOKEN", "DATABASE_URL",
                 "FAIRWAY_ALLOWED_HOSTS", "FAIRWAY_KEKS"]
    _missing = [name for name in _required if not os.environ.get(name)]
    if _missing:
        raise ImproperlyConfigured(f"FAIRWAY_ENV=production needs these environment variables: {', '.join(_missing)}")
    DEBUG = False
    SECURE_HSTS_SECONDS = env_int("FAIRWAY_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("FAIRWAY_HSTS_PRELOAD", True)
    # TLS ends at the reverse proxy, which sets X-Forwarded-Proto; probes reach /health and /ready over HTTP.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("FAIRWAY_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^health$", r"^ready$"]
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    CSRF_TRUSTED_ORIGINS = env_list("FAIRWAY_CSRF_TRUSTED_ORIGINS")
if os.environ.get("FAIRWAY_LOG_FORMAT", "json" if FAIRWAY_ENV == "production" else "plain") == "json":
    LOGGING["formatters"]["plain"] = {"()": "config.logging.JsonFormatter"}
