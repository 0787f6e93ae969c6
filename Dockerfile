# One image for every GridPatrol process; the command picks the role (api, worker, ticketer, gateway).
# fonts-noto-cjk: evidence banners are drawn in Chinese (models/evidence/drawing.py needs a CJK font).
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg fonts-noto-cjk && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY models ./models
COPY ingest ./ingest
COPY detectors ./detectors
COPY rtsp_gateway ./rtsp_gateway
COPY api ./api
COPY gridpatrol ./gridpatrol
ARG EXTRAS=""
RUN pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
ENV GRIDPATROL_DATA_DIR=/data
VOLUME /data
EXPOSE 8000
CMD ["gridpatrol", "serve", "--host", "0.0.0.0", "--port", "8000"]
