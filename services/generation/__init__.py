"""The generation stage: image models (OpenAI images) for refinement."""
