# Container targets, included by the Makefile. Docker Compose v2 by default; for podman use
#   make up COMPOSE=podman-compose          (or COMPOSE=docker-compose against podman's socket,
#                                            see deploy/DEPLOYMENT.md)
COMPOSE ?= docker compose
COMPOSE_FILES := -f docker-compose.yml
COMPOSE_GPU_FILES := -f docker-compose.yml -f docker-compose.gpu.yml
# `--wait` (Compose v2) returns once every service is healthy; drop it for older tools.
UP_FLAGS ?= --build --detach --wait
SERVICE ?=

.PHONY: up up-gpu down logs check-compose

up: ## Build and start the CPU stack in containers (CHUNK_WORKERS=2, http://127.0.0.1:8000)
	$(COMPOSE) $(COMPOSE_FILES) up $(UP_FLAGS)

up-gpu: ## Same, with the model server on an NVIDIA GPU (CUDA image, float16)
	$(COMPOSE) $(COMPOSE_GPU_FILES) up $(UP_FLAGS)

down: ## Stop and remove the containers (the model cache volume stays)
	$(COMPOSE) $(COMPOSE_GPU_FILES) down

logs: ## Follow the containers' logs (SERVICE=chunk_worker for one service)
	$(COMPOSE) $(COMPOSE_FILES) logs --follow --tail=100 $(SERVICE)

check-compose: $(STAMP) ## Check compose files and k8s manifests against the services (no engine)
	$(PY) scripts/check_compose.py
