"""Model loading (transformers on CPU or GPU; vLLM where installed), device choice, fingerprints."""
