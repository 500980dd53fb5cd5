# syntax=docker/dockerfile:1
# The production image: multi-stage, no compiler, no embedded servers (requirements.txt only; the
# embedded PostgreSQL/Redis and honcho are in requirements-local.txt), static files collected at build
# time and served by the web process (WhiteNoise), running as a non-root user.

FROM python:3.12-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
# Wheels only, so the image needs no compiler (psycopg is the binary build), except three pure-Python
# packages published as sources only (django-eventstream's GRIP dependencies): they build without one.
RUN /venv/bin/pip install --only-binary=:all: --no-binary=gripcontrol,django-grip,pubcontrol \
    -r /tmp/requirements.txt
WORKDIR /app
COPY . .
# collectstatic imports the settings, which need a deployment's variables: placeholders, never connected to.
RUN DATABASE_URL=postgres://build@localhost/build REDIS_URL=redis://localhost:1/0 DJANGO_SECRET_KEY=build-only \
    DJANGO_ALLOWED_HOSTS=build STATIC_ROOT=/app/staticfiles \
    /venv/bin/python manage.py collectstatic --noinput --verbosity 0

FROM python:3.12-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PATH=/venv/bin:$PATH STATIC_ROOT=/app/staticfiles
RUN groupadd --gid 10001 app && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin app
COPY --from=build /venv /venv
# Owned by root and not writable by the app user: the code and static files are read-only at run time.
COPY --from=build /app /app
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health/live', timeout=4)"]
CMD ["uvicorn", "config.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--proxy-headers"]
