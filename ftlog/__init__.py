"""ftlog keeps the history of fine-tuning jobs from OpenAI-compatible APIs."""

__version__ = "0.1.0"
