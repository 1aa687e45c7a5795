# receiver: Alertmanager webhooks -> incidents in PostgreSQL.
#
#   docker build -t receiver .
#   docker run -p 9095:9095 -v receiver-data:/var/lib/receiver receiver
#
# Without DATABASE_URL the receiver runs an embedded PostgreSQL with its data in /var/lib/receiver
# (a volume); with DATABASE_URL set it uses that server and the directory stays empty.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tini as PID 1: delivers SIGTERM to the receiver (a bare PID 1 ignores signals it has no handler for,
# e.g. while it is still starting) and reaps the PostgreSQL postmaster once it has exited.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# An unprivileged user: PostgreSQL refuses to run as root, and the receiver needs no privileges.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/receiver --no-create-home \
        --shell /usr/sbin/nologin receiver \
    && install -d -o receiver -g receiver -m 0750 /var/lib/receiver

COPY . /tmp/receiver-src
RUN pip install --no-cache-dir /tmp/receiver-src \
    && rm -rf /tmp/receiver-src

ENV RECEIVER_DATA_DIR=/var/lib/receiver \
    HOME=/var/lib/receiver
VOLUME ["/var/lib/receiver"]
WORKDIR /var/lib/receiver
USER 10001:10001

EXPOSE 9095
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9095/healthz', timeout=4)"]

ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["receiver", "serve"]
