# One image for every role of videosdk-archiver: `archiver serve`, `worker`, `beat`, `db upgrade`.
# Build:  docker build -t videosdk-archiver .
# Azure AD credentials (account_url without a key) need the azure-identity extra:
#         docker build --build-arg EXTRAS=azure-identity -t videosdk-archiver .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

ARG EXTRAS=""

# Only what the package needs (see .dockerignore); the source tree is removed after installing.
WORKDIR /src
COPY pyproject.toml README.md celeryconfig.py ./
COPY archiver ./archiver
COPY providers ./providers
RUN pip install ".${EXTRAS:+[$EXTRAS]}" && rm -rf /src

# A fixed, unprivileged uid/gid. /var/lib/archiver is the working directory: the beat schedule goes to
# .archiver/ under it and file:// destinations in deploy/archiver.toml write to archive/ under it.
RUN groupadd --system --gid 10001 archiver \
 && useradd --system --uid 10001 --gid archiver --home-dir /var/lib/archiver --no-create-home \
            --shell /usr/sbin/nologin archiver \
 && mkdir -p /var/lib/archiver/.archiver /var/lib/archiver/archive \
 && chown -R archiver:archiver /var/lib/archiver

WORKDIR /var/lib/archiver
USER 10001:10001

# 8000: webhook receiver (archiver serve); 9100: worker metrics (archiver worker --metrics-port 9100)
EXPOSE 8000 9100
CMD ["archiver", "--help"]
