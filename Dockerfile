# fleetbot: the bot, the core and the agent API in one process.
#   docker build -t fleetbot .
#   docker run --rm -v fleetbot-data:/data fleetbot init /data    # once: config, key ring, tokens
#   docker run -d --name fleetbot -v fleetbot-data:/data -e FLEETBOT_TELEGRAM_TOKEN -p 8080:8080 fleetbot
# The README's Docker part says how to edit /data/config.yaml and how the health check works.
# BASE is any Debian-like image with Python 3.11+, venv and useradd; the default needs a
# registry. Without one, scripts/docker_check.sh builds a local base from Debian's packages
# and passes it as --build-arg BASE=localhost/fleetbot-base.
ARG BASE=python:3.11-slim
FROM ${BASE}

# The venv keeps pip off the base's own Python (Debian's refuses `pip install` there, PEP 668)
# and puts `fleetbot` and `python` first on PATH, whichever base this is.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/fleetbot/bin:$PATH \
    FLEETBOT_CONFIG=/data/config.yaml

RUN useradd --create-home --uid 10001 --user-group fleetbot \
    && mkdir /data && chown fleetbot:fleetbot /data

WORKDIR /src
# The dependencies first, from pyproject.toml alone, so that a change to the code rebuilds only
# the small layer below (seconds), not the whole download; the build backend too, so that the
# package itself installs without a build environment of its own. The eddsa extra is in: an
# image's user cannot pip-install it afterwards, and auth.algorithm: EdDSA needs it.
COPY pyproject.toml ./
RUN python3 -m venv /opt/fleetbot \
    && python3 -c "import tomllib; t = tomllib.load(open('pyproject.toml', 'rb')); p = t['project']; print(*t['build-system']['requires'], *p['dependencies'], *p['optional-dependencies']['eddsa'], sep='\n')" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm -rf /tmp/requirements.txt /root/.cache
COPY README.md LICENSE ./
COPY core ./core
COPY bot ./bot
COPY offline_botapi ./offline_botapi
COPY fleetbot ./fleetbot
# Inside a container the API must listen on all interfaces to be reachable through -p, so the
# config that `fleetbot init /data` writes says so. It is set in the file, not as an ENV: an ENV
# would win over api.listen in /data/config.yaml, and editing the file would change nothing.
RUN sed -i 's/^  listen: 127\.0\.0\.1:8080$/  listen: 0.0.0.0:8080/' fleetbot/config.example.yaml \
    && grep -q '^  listen: 0\.0\.0\.0:8080$' fleetbot/config.example.yaml \
    && pip install --no-deps --no-build-isolation . \
    && fleetbot --version \
    && cd / && rm -rf /src /root/.cache

USER fleetbot
WORKDIR /data
# The config, the database, the key ring and the token files live here; mount a volume.
VOLUME ["/data"]
EXPOSE 8080

# The check asks fleetbot's own config loader where the API listens: api.listen from
# $FLEETBOT_CONFIG with the FLEETBOT_API__LISTEN override applied, exactly as `fleetbot run`
# reads it. A wildcard address is checked on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-I", "-c", "import os, sys, urllib.request; from core import load_config; api = load_config(os.environ['FLEETBOT_CONFIG'], os.environ).api; host = {'': '127.0.0.1', '0.0.0.0': '127.0.0.1', '::': '::1'}.get(api.host, api.host); host = f'[{host}]' if ':' in host else host; sys.exit(0 if urllib.request.urlopen(f'http://{host}:{api.port}/healthz', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["fleetbot"]
CMD ["run"]
