# One OCR instance: gunicorn + Flask + PP-OCR (ONNX Runtime), configured by OCR_*.
#
# Built by scripts/build-image.sh, which puts a wheelhouse next to this file so
# that nothing inside the build touches the network:
#   wheelhouse/deps/  every dependency of ocr-fleet[server] (an instance), as wheels
#   wheelhouse/app/   the ocr-fleet wheel itself
#   debs/             Tesseract's language packs of FLEET_LANGS and tesseract-ocr-osd:
#                     Debian packages of data only (traineddata files), unpacked with dpkg-deb
# BASE_IMAGE needs python3 (3.11) with the venv module; Debian's python3 or the
# official python image both do, and neither has to provide `python`.
ARG BASE_IMAGE=python:3.11-slim

# The dependencies change rarely: install them in a stage of their own so that
# the wheels never reach the final image and the layer stays cached across
# application changes.
FROM ${BASE_IMAGE} AS deps
COPY wheelhouse/deps/ /wheels/
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check /wheels/*.whl

# The language packs are data only: unpacked in a stage of their own, so that only their
# traineddata files reach the final image, not the .deb files too.
FROM ${BASE_IMAGE} AS langs
COPY debs/ /debs/
RUN set -e; for deb in /debs/*.deb; do dpkg-deb -x "$deb" /out; done; \
    ls /out/usr/share/tesseract-ocr/*/tessdata/*.traineddata >/dev/null

FROM ${BASE_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/home/ocr \
    OCR_HOST=127.0.0.1 \
    OCR_PORT=8000
# A non-root user with a writable home: ONNX Runtime and friends write under
# $HOME/.cache.
RUN groupadd --system --gid 10001 ocr \
    && useradd --system --uid 10001 --gid ocr --home-dir /home/ocr --create-home \
        --shell /usr/sbin/nologin ocr
# The languages (FLEET_LANGS at build time): their traineddata files, in Debian's
# /usr/share/tesseract-ocr/5/tessdata where the instance looks. They change rarely: before the app.
COPY --from=langs /out/usr/share/tesseract-ocr/ /usr/share/tesseract-ocr/
COPY --from=deps /opt/venv /opt/venv
COPY wheelhouse/app/ /wheels/
RUN pip install --no-index --no-cache-dir --disable-pip-version-check --find-links /wheels 'ocr-fleet[server]' \
    && rm -rf /wheels

USER ocr
WORKDIR /home/ocr
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('OCR_PORT', '8000'), timeout=4)"]
# Exec form: gunicorn is PID 1 and gets SIGTERM itself, so the instance drains.
CMD ["gunicorn", "-c", "python:ocr_app.gunicorn_conf", "ocr_app:create_app()"]

# Last, so that a new source hash rebuilds no layer.
ARG SOURCE_HASH=unknown
LABEL org.opencontainers.image.title="ocr-fleet" \
      org.opencontainers.image.description="OCR Fleet instance (PP-OCR via rapidocr, gunicorn)" \
      ocr-fleet.source-hash="${SOURCE_HASH}"
