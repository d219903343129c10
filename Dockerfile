# calico-libnetwork as a container. Run it on the host network, privileged (it creates veths and
# routes), with Docker's plugin folder and socket mounted:
#   docker run -d --name calico-libnetwork --net=host --privileged --restart=always \
#     -v /run/docker/plugins:/run/docker/plugins -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /var/lib/calico:/var/lib/calico -v /run/calico:/run/calico \
#     -e ETCD_ENDPOINTS=http://10.0.0.10:2379 -e NODENAME=$(hostname) calico-libnetwork
# BIRD runs inside the container: stopping the container stops it, and its peers keep this host's routes
# only for BGP's graceful-restart time (120 s). The systemd unit keeps BIRD running across restarts.
FROM node:20-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts/bundle-daemon.mjs ./scripts/
COPY src ./src
COPY plugin-spec ./plugin-spec
COPY bench ./bench
COPY test/helpers ./test/helpers
RUN npm run build && npm prune --omit=dev

FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends iproute2 iptables ipset etcd-server bird2 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
RUN ln -s /app/dist/src/cli/main.js /usr/local/bin/calicoctl && chmod +x /app/dist/src/cli/main.js /app/dist/src/daemon/main.js
# Node.js flags and environment: DAEMON_NODE_FLAGS and DAEMON_ENVIRONMENT in
# src/adapters/host/installation.ts say why.
ENV MALLOC_MMAP_THRESHOLD_=131072
ENTRYPOINT ["node", "--max-semi-space-size=1", "--no-concurrent-recompilation", "/app/dist/src/daemon/main.js"]
