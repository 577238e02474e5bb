# fleetbot: the bot, the core and the agent API in one process.
#   docker build -t fleetbot .
#   docker run -v fleetbot-data:/data fleetbot init /data      # once: config, key ring, tokens
#   docker run -v fleetbot-data:/data -e FLEETBOT_TELEGRAM_TOKEN=... -p 8080:8080 fleetbot
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    FLEETBOT_CONFIG=/data/config.yaml \
    FLEETBOT_API__LISTEN=0.0.0.0:8080

RUN useradd --create-home --uid 10001 fleetbot \
    && mkdir /data && chown fleetbot:fleetbot /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY bot ./bot
COPY offline_botapi ./offline_botapi
COPY fleetbot ./fleetbot
RUN pip install . && rm -rf /root/.cache

USER fleetbot
# The database, the key ring and the token files live here; mount a volume.
VOLUME ["/data"]
EXPOSE 8080

# The check follows the port of FLEETBOT_API__LISTEN (change it with -e, not in config.yaml:
# the env override wins over the file, so both the server and this check read the same value).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD python -c "import os, sys, urllib.request; port = os.environ.get('FLEETBOT_API__LISTEN', ':8080').rsplit(':', 1)[1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4).status == 200 else 1)"

ENTRYPOINT ["fleetbot"]
CMD ["run"]
