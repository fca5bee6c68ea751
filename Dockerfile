# The lean CPU build: the exact versions of requirements/run.lock (hashes checked), then rlharness.
#   docker build --build-arg RLHARNESS_COMMIT=$(git rev-parse HEAD) -t rlharness .
#   docker run --rm -v "$PWD/results:/app/results" rlharness       # the triad cube on Baird
#   docker run --rm -v "$PWD/results:/app/results" rlharness run experiments/baird_tdc.yaml
FROM python:3.11-slim

# torch 2.13.0+cpu (the CPU build the lock pins) is on PyTorch's CPU index, not on PyPI
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# the image has no .git: runs record the commit it was built from (rlharness.results.provenance)
ARG RLHARNESS_COMMIT=
ENV RLHARNESS_COMMIT=${RLHARNESS_COMMIT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY requirements/run.lock requirements/run.lock
RUN pip install --require-hashes --no-deps --extra-index-url "${TORCH_INDEX}" \
        -r requirements/run.lock
COPY . .
RUN pip install --no-deps .

ENTRYPOINT ["rlharness"]
CMD ["run", "experiments/triad_cube_baird.yaml"]
