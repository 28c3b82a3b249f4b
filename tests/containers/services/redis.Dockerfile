# A stand-in for redis:7.x where no registry is reachable: Debian's Redis on the locally made base.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data && chown redis:redis /data \
    && printf '#!/bin/sh\n# As the official image: protected mode off, the container network is the boundary.\nexec /usr/bin/redis-server "$@" --protected-mode no\n' >/usr/local/bin/redis-server \
    && chmod +x /usr/local/bin/redis-server
WORKDIR /data
USER redis
CMD ["redis-server"]
