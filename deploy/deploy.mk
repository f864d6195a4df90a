# Container targets, included by the Makefile. Docker Compose v2 by default; for podman use
#   make up COMPOSE=podman-compose          (or COMPOSE=docker-compose against podman's socket,
#                                            see deploy/DEPLOYMENT.md)
COMPOSE ?= docker compose
COMPOSE_FILES := -f docker-compose.yml
COMPOSE_GPU_FILES := -f docker-compose.yml -f docker-compose.gpu.yml
# `--wait` (Compose v2) returns once every service is healthy; drop it for older tools.
UP_FLAGS ?= --build --detach --wait
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
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_FILES) up $(UP_FLAGS)

up-gpu: $(FLEET_SECRET) ## Same, with the model server on an NVIDIA GPU (CUDA image, float16)
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_GPU_FILES) up $(UP_FLAGS)

down: $(FLEET_SECRET) ## Stop and remove the containers (the model cache volume stays)
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_GPU_FILES) down

logs: $(FLEET_SECRET) ## Follow the containers' logs (SERVICE=chunk_worker for one service)
	$(FLEET_ENV) $(COMPOSE) $(COMPOSE_FILES) logs --follow --tail=100 $(SERVICE)

check-compose: $(STAMP) ## Check compose files and k8s manifests against the services (no engine)
	$(PY) scripts/check_compose.py
