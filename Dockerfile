# yuqing: one image for every stage (`yuqing stage crawler|classifier|responder|web`).
# Built by docker-compose.yml; config/ is mounted at run time, a copy is baked
# in at /app/config as a fallback.
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# torch first, the CPU-only wheel from the PyTorch index: from PyPI it would
# pull gigabytes of CUDA libraries. `pip install .` then finds torch==2.13.0
# already satisfied (the +cpu local version matches the pin).
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0

COPY pyproject.toml README.md ./
COPY yuqing ./yuqing
COPY stream ./stream
COPY crawlers ./crawlers
COPY classifiers ./classifiers
COPY responder ./responder
COPY web ./web
COPY config ./config
RUN pip install . \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/yuqing yuqing \
    && mkdir -p /var/lib/yuqing \
    && chown yuqing:yuqing /var/lib/yuqing

USER yuqing
ENV YUQING_CONFIG_DIR=/app/config \
    YUQING_DATA_DIR=/var/lib/yuqing
WORKDIR /var/lib/yuqing
# Build jieba's dictionary cache now, not on every container start.
RUN python -c "from responder.search import segment; segment.ensure_loaded()"

EXPOSE 8000
CMD ["yuqing", "stage", "web"]
