# syntax=docker/dockerfile:1
# Build a wheel, then install it into a slim runtime with no build tools.

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
RUN pip install --no-cache-dir build==1.2.2
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python -m build --wheel --outdir /dist

FROM python:3.11-slim-bookworm
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN groupadd --system --gid 10001 operator \
    && useradd --system --uid 10001 --gid operator --no-create-home --shell /usr/sbin/nologin operator
COPY --from=build /dist /dist
RUN pip install --no-cache-dir /dist/*.whl && rm -rf /dist
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["nemotron-operator", "run", "--liveness=http://0.0.0.0:8080/healthz"]
CMD ["--all-namespaces"]
