# Container targets, included by the Makefile. Docker Compose v2 by default; for podman use
#   make up COMPOSE=podman-compose          (or COMPOSE=docker-compose against podman's socket,
#                                            see deploy/DEPLOYMENT.md)
COMPOSE ?= docker compose
# Your own docker-compose.override.yml (git-ignored) is added when present, as plain
# `docker compose` does: `-f` turns that off, so the targets name it.
OVERRIDE_FILE := $(wildcard docker-compose.override.yml)
COMPOSE_FILES := -f docker-compose.yml $(if $(OVERRIDE_FILE),-f $(OVERRIDE_FILE))
COMPOSE_GPU_FILES := -f docker-compose.yml -f docker-compose.gpu.yml $(if $(OVERRIDE_FILE),-f $(OVERRIDE_FILE))
# `--wait` (Compose v2) returns once every service is healthy; drop it for older tools.
UP_FLAGS ?= --build --detach --wait
# podman-compose builds the images at once, and podman 4.3 then keeps a copy of the layers they
# share per image: the next build may follow another image's copy and rebuild from there. One
# podman command at a time keeps one copy, so a second `make up` reuses every layer.
BUILD_FLAGS := $(if $(findstring podman-compose,$(COMPOSE)),--parallel 1)
SERVICE ?=
# The secret the services share (docker-compose.yml wants WHISPERFLEET_FLEET_SECRET): yours when
# exported, else one made once into this git-ignored file (mode 600) and used from then on.
FLEET_SECRET_FILE ?= .fleet-secret
ifeq ($(WHISPERFLEET_FLEET_SECRET),)
FLEET_SECRET := $(FLEET_SECRET_FILE)
FLEET_ENV := WHISPERFLEET_FLEET_SECRET="$$(cat $(FLEET_SECRET_FILE))"
endif

.PHONY: up up-gpu down logs check-compose

$(FLEET_SECRET_FILE):
	@umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(32))' > $@
	@echo "made the fleet secret in $@ (the services' shared credential; keep it private)"

up: $(FLEET_SECRET) ## Build and start the CPU stack in containers (CHUNK_WORKERS=2, http://127.0.0.1:8000)
	$(FLEET_ENV) $(COMPOSE) $(BUILD_FLAGS) $(COMPOSE_FILES) up $(UP_FLAGS)

up-gpu: $(FLEET_SECRET) ## Same, with the model server on an NVIDIA GPU (CUDA image, float16)
	$(FLEET_ENV) $(COMPOSE) $(BUILD_FLAGS) $(COMPOSE_GPU_FILES) up $(UP_FLAGS)

# --remove-orphans: podman-compose removes only the replicas its file names, so workers added with
# `--scale` kept running and held the networks; with it, every container of the project goes.
down: $(FLEET_SECRET) ## Stop and remove the containers and networks, scaled replicas too (the volumes stay)
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_GPU_FILES) down --remove-orphans

logs: $(FLEET_SECRET) ## Follow the containers' logs (SERVICE=chunk_worker for one service)
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_FILES) logs --follow --tail=100 $(SERVICE)

check-compose: $(STAMP) ## Check compose files and k8s manifests against the services (no engine)
	$(PY) scripts/check_compose.py
