# One image for every role of videosdk-archiver: `archiver serve`, `worker`, `beat`, `db upgrade`.
# Build:  docker build -t videosdk-archiver .
# Azure AD credentials (account_url without a key) need the azure-identity extra:
#         docker build --build-arg EXTRAS=azure-identity -t videosdk-archiver .
# Dependencies come from requirements.lock (requirements.<EXTRAS>.lock): exact versions, each with
# its sha256, so a build installs the same bytes every time or fails. Refresh with `make lock`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

ARG EXTRAS=""

# Only what the package needs (see .dockerignore); the source tree is removed after installing.
WORKDIR /src
COPY requirements.lock requirements.azure-identity.lock ./
RUN pip install --require-hashes --no-deps -r "requirements${EXTRAS:+.$EXTRAS}.lock"
COPY pyproject.toml README.md celeryconfig.py ./
COPY archiver ./archiver
COPY providers ./providers
RUN pip install --no-deps . && pip check && rm -rf /src

# A fixed, unprivileged uid/gid. /var/lib/archiver is the working directory: the beat schedule goes to
# .archiver/ under it (owner only) and file:// destinations in deploy/archiver.toml write to archive/
# under it. The containers run with a read-only root: these two are volumes in docker-compose.yml.
RUN groupadd --system --gid 10001 archiver \
 && useradd --system --uid 10001 --gid archiver --home-dir /var/lib/archiver --no-create-home \
            --shell /usr/sbin/nologin archiver \
 && mkdir -p /var/lib/archiver/.archiver /var/lib/archiver/archive \
 && chown -R archiver:archiver /var/lib/archiver \
 && chmod 0700 /var/lib/archiver/.archiver && chmod 0750 /var/lib/archiver/archive

WORKDIR /var/lib/archiver
USER 10001:10001

# 8000: webhook receiver (archiver serve); 9100: worker metrics (archiver worker --metrics-port 9100)
EXPOSE 8000 9100
CMD ["archiver", "--help"]
