# One image for every service; the command picks it: `run centralcloud|singularity|genesis|nexus`,
# or `db init` (see docs/deploy.md).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim-bookworm

# Extra Debian packages for Genesis's other languages, e.g. --build-arg EXTRA_PACKAGES="nodejs elixir".
ARG EXTRA_PACKAGES=""

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# bubblewrap: Genesis's sandbox. python3: Debian's /usr/bin/python3, which runs the sandbox's
# reaper and Python jobs (this image's own Python lives in /usr/local). util-linux: unshare,
# setpriv and prlimit, which a root worker uses around bubblewrap. git: experiments.
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap git python3 util-linux ${EXTRA_PACKAGES} \
    && rm -rf /var/lib/apt/lists/*

# ruff is not a development tool here: Genesis binds it into the sandbox for the lint step.
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl "ruff>=0.6" && rm -rf /wheels

# Every service but Genesis runs as this unprivileged user (Genesis runs as root to give each
# sandboxed run a uid of its own; see docs/deploy.md).
RUN groupadd --system --gid 10001 singularity \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/singularity \
       --shell /usr/sbin/nologin singularity \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/singularity

ENV SINGULARITY_HOME=/var/lib/singularity \
    SINGULARITY_LOG_FORMAT=json \
    SINGULARITY_METRICS_HOST=0.0.0.0 \
    SINGULARITY_METRICS_PORT=9464

WORKDIR /var/lib/singularity
USER 10001:10001
# 3000: the Nexus web UI (PORT); 9464: /healthz, /livez and /metrics of every service.
EXPOSE 3000 9464

ENTRYPOINT ["singularity"]
CMD ["run", "singularity"]
