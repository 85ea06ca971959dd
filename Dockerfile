FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HANDOVER_ENVIRONMENT=production \
    HANDOVER_DATABASE_URL=sqlite:////data/handover.db

WORKDIR /srv/handover
# Pinned, hash-checked dependencies first (a layer that changes only with the lock), then the service itself.
COPY requirements.lock ./
RUN pip install --no-cache-dir -r requirements.lock
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN pip install --no-cache-dir --no-deps . \
    && useradd --system --uid 10001 --home-dir /srv/handover handover \
    && mkdir -p /data && chown handover /data

USER handover
EXPOSE 8000
# The API's health; the worker and migrate services of compose.yaml (same image, another command) turn it off.
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz').status != 200)"
CMD ["handover", "serve", "--host", "0.0.0.0", "--port", "8000"]
