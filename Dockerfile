# The servicewatch image: one Python package, used by the compose stack for the workers
# (`servicewatch worker`) and the simulator (`servicewatch simulate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Only what the package build reads (pyproject names README.md as the long description);
# tests and deploy files stay out of the image (.dockerignore).
COPY pyproject.toml README.md /src/
COPY schemas /src/schemas
COPY streams /src/streams
RUN pip install /src && rm -rf /src

# Not root. State lives in Kafka (changelog topics); the data dir holds local files only.
RUN useradd --create-home --uid 10001 servicewatch
USER servicewatch
WORKDIR /home/servicewatch
ENV SERVICEWATCH_DATA_DIR=/home/servicewatch/data \
    SERVICEWATCH_WEB_HOST=0.0.0.0

EXPOSE 6066
ENTRYPOINT ["servicewatch"]
CMD ["worker"]
