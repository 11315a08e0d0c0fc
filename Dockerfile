# The profitwatch service image: `docker compose up` runs `profitwatch worker` from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# Only what the package needs: the build context also holds .venv, tests and caches.
COPY pyproject.toml README.md ./
COPY models ./models
COPY alerts ./alerts
COPY streams ./streams
RUN pip install .

# A non-root user owning the data dir (RocksDB tables). A named volume mounted on /data
# starts as a copy of this directory, ownership included.
RUN useradd --create-home --uid 10001 --user-group profitwatch \
    && mkdir -p /data \
    && chown profitwatch:profitwatch /data
USER profitwatch
ENV PROFITWATCH_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066

ENTRYPOINT ["profitwatch"]
CMD ["worker"]
