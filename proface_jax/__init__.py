"""proface-jax: PRO-Face S in JAX — reversible, password-keyed face obfuscation with an invertible flow."""
from proface_jax.flow import FlowConfig, init_params, param_count, protect, recover, unprotect
from proface_jax.keys import KDF, SecretMap, secret_map, strong_kdf
from proface_jax.checkpoint import Checkpoint, load_checkpoint, save_checkpoint

__version__ = "0.1.0"

__all__ = [
    "FlowConfig", "init_params", "param_count", "protect", "recover", "unprotect",
    "KDF", "SecretMap", "secret_map", "strong_kdf",
    "Checkpoint", "load_checkpoint", "save_checkpoint",
]
