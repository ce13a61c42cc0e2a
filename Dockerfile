# SPDX-License-Identifier: MIT
# Build stage: Debian 12 with the -dev packages; runtime: Debian 12 slim with
# only the shared libraries, running as an unprivileged user.
FROM debian:12 AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential pkg-config libmicrohttpd-dev \
      libcurl4-openssl-dev libhiredis-dev libjansson-dev libssl-dev libjemalloc-dev libpcre2-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Makefile ./
COPY include ./include
COPY src ./src
RUN make -j"$(nproc)" build/release/tiergate

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libmicrohttpd12 libcurl4 libhiredis0.14 libjansson4 libjemalloc2 libpcre2-8-0 \
      libssl3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home tiergate
COPY --from=build /src/build/release/tiergate /usr/local/bin/tiergate
COPY config/tiergate.json config/router-model.json /etc/tiergate/
USER tiergate
ENV TIERGATE_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=2s --retries=3 CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["tiergate", "-c", "/etc/tiergate/tiergate.json"]
