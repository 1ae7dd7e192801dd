"""Model zoo (torch, host only). `create_model`, `list_models`."""
from .registry import create_model, list_models, model_config, register

__all__ = ["create_model", "list_models", "model_config", "register"]
