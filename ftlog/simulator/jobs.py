"""Simulated jobs: their specs, their state at a given time, their events and checkpoints."""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Outcome = Literal["succeeded", "failed", "cancelled"]
Flavor = Literal["nebius", "openai"]

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True)
class Hyperparameters:
    """Nebius hyperparameters, with Nebius' defaults."""

    batch_size: int = 8
    learning_rate: float = 1e-5
    n_epochs: int = 3
    warmup_ratio: float = 0.0
    weight_decay: float = 0.0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    packing: bool = True
    max_grad_norm: float = 1.0
    context_length: int = 8192


@dataclass(frozen=True)
class JobSpec:
    """Everything that decides a simulated job's life: validating, queued, running, then outcome.

    Training runs at ``tokens_per_second``; a failed or cancelled job stops after
    ``stop_fraction`` of its tokens. ``revision`` counts :meth:`SimulatedAPI.touch` calls and
    shows in the suffix.
    """

    id: str
    created_at: int
    model: str = "meta-llama/Llama-3.1-8B-Instruct"
    hyperparameters: Hyperparameters = field(default_factory=Hyperparameters)
    total_steps: int = 100
    tokens_per_step: int = 1000
    tokens_per_second: float = 100.0
    validating_seconds: int = 60
    queued_seconds: int = 120
    outcome: Outcome = "succeeded"
    stop_fraction: float = 1.0
    error_code: str = "internal_error"
    error_message: str = "Training worker exited unexpectedly"
    training_file: str = "file-training"
    validation_file: str | None = None
    suffix: str | None = None
    seed: int = 0
    wandb_project: str | None = None
    estimate_skew: float = 0.05
    flavor: Flavor = "nebius"
    revision: int = 0

    @property
    def total_tokens(self) -> int:
        return self.total_steps * self.tokens_per_step

    @property
    def stop_tokens(self) -> int:
        """Tokens trained when the job ends: all of them unless it fails or is cancelled."""
        if self.outcome == "succeeded":
            return self.total_tokens
        return int(self.total_tokens * self.stop_fraction)

    @property
    def started_at(self) -> int:
        return self.created_at + self.validating_seconds + self.queued_seconds

    @property
    def finished_at(self) -> int:
        return self.time_of_tokens(self.stop_tokens)

    def time_of_tokens(self, tokens: int) -> int:
        """The first whole second at which training has reached ``tokens``."""
        return self.started_at + math.ceil(tokens / self.tokens_per_second)

    def status_at(self, t: int) -> str:
        if t < self.created_at + self.validating_seconds:
            return "validating_files"
        if t < self.started_at:
            return "queued"
        if t < self.finished_at:
            return "running"
        return self.outcome

    def trained_tokens_at(self, t: int) -> int | None:
        if t < self.started_at:
            return None
        return min(int((t - self.started_at) * self.tokens_per_second), self.stop_tokens)


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def _unit(*parts: object) -> float:
    """A deterministic pseudo-random number in [0, 1) for these parts."""
    return int(_digest(*parts)[:12], 16) / 16**12


def render_job(spec: JobSpec, t: int) -> dict[str, Any]:
    """The job object the API returns at simulated time ``t`` (``t >= spec.created_at``)."""
    status = spec.status_at(t)
    tokens = spec.trained_tokens_at(t)
    suffix = f"{spec.suffix or 'job'}-r{spec.revision}" if spec.revision else spec.suffix
    full_run = spec.time_of_tokens(spec.total_tokens) - spec.started_at
    job: dict[str, Any] = {
        "id": spec.id,
        "object": "fine_tuning.job",
        "created_at": spec.created_at,
        "error": _error_object(spec) if status == "failed" else None,
        "finished_at": spec.finished_at if status in TERMINAL_STATUSES else None,
        "hyperparameters": asdict(spec.hyperparameters),
        "integrations": _integrations(spec),
        "model": spec.model,
        "organization_id": "",
        "result_files": [f"file-{_digest(spec.id, 'result')}"] if status == "succeeded" else [],
        "seed": spec.seed,
        "suffix": suffix,
        "status": status,
        "trained_tokens": tokens,
        "training_file": spec.training_file,
        "validation_file": spec.validation_file,
        # Like a real estimate, a little off from the finish, and blind to an upcoming failure.
        "estimated_finish": (
            spec.started_at + full_run + int(full_run * spec.estimate_skew)
            if status == "running"
            else None
        ),
        "trained_steps": None if tokens is None else tokens // spec.tokens_per_step,
        "total_steps": spec.total_steps,
    }
    return _as_openai(spec, job) if spec.flavor == "openai" else job


def _error_object(spec: JobSpec) -> dict[str, Any]:
    return {"code": spec.error_code, "message": spec.error_message, "param": None}


def _integrations(spec: JobSpec) -> list[dict[str, Any]]:
    if spec.wandb_project is None:
        return []
    wandb: dict[str, Any] = {
        "project": spec.wandb_project,
        "name": spec.id,
        "entity": None,
        "tags": [],
    }
    return [{"type": "wandb", "wandb": wandb}]


def _as_openai(spec: JobSpec, job: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's shape: "auto" hyperparameters until the job runs, a ``method``, no step counts,
    and ``trained_tokens`` null until the job ends (its progress is in the metrics events)."""
    hp = spec.hyperparameters
    hyper: dict[str, Any] = dict.fromkeys(("batch_size", "learning_rate_multiplier", "n_epochs"))
    if job["status"] in ("validating_files", "queued"):
        hyper = dict.fromkeys(hyper, "auto")
    else:
        multiplier = round(hp.learning_rate / 1e-5, 4)
        hyper.update(
            batch_size=hp.batch_size, learning_rate_multiplier=multiplier, n_epochs=hp.n_epochs
        )
    suffix = job.pop("suffix")
    del job["trained_steps"], job["total_steps"]
    if job["status"] not in TERMINAL_STATUSES:
        job["trained_tokens"] = None
    model = f"ft:{spec.model}:simulated:{suffix}:{spec.id[-8:]}"
    job.update(
        hyperparameters=hyper,
        organization_id="org-simulated",
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
        fine_tuned_model=model if job["status"] == "succeeded" else None,
        metadata=None,
        user_provided_suffix=suffix,
    )
    return job


def step_metrics(spec: JobSpec, step: int) -> dict[str, float]:
    """Losses decaying exponentially over training, faster with a higher learning rate.

    The noise scales with the remaining gap, so losses fall strictly between points at least
    a tenth of training apart; more epochs keep validation loss higher (mild overfitting).
    """
    hp = spec.hyperparameters
    progress = step / spec.total_steps
    floor = 0.45 + (0.1 if hp.lora else 0.0)
    gap = 1.8 * math.exp(-3.0 * math.sqrt(hp.learning_rate / 1e-5) * progress)
    train = floor + gap * (0.9 + 0.2 * _unit(spec.id, step, "train"))
    full_valid = floor + 0.05 + gap + 0.01 * hp.n_epochs * progress**2
    valid = full_valid + gap * (0.2 * _unit(spec.id, step, "valid") - 0.1)

    def accuracy(loss: float) -> float:
        return round(max(0.0, 1.0 - loss / 3.0), 4)

    return {
        "step": step,
        "train_loss": round(train, 4),
        "train_mean_token_accuracy": accuracy(train),
        "valid_loss": round(valid, 4),
        "valid_mean_token_accuracy": accuracy(valid),
        "full_valid_loss": round(full_valid, 4),
        "full_valid_mean_token_accuracy": accuracy(full_valid),
    }


def job_events(spec: JobSpec) -> list[dict[str, Any]]:
    """Every event of the job's life, oldest first; a metrics event every tenth of training."""
    validated = spec.created_at + spec.validating_seconds
    raw: list[tuple[int, str, str, dict[str, Any] | None]] = [
        (spec.created_at, "info", f"Created fine-tuning job: {spec.id}", None),
        (spec.created_at, "info", f"Validating training file: {spec.training_file}", None),
        (validated, "info", "Files validated, moving job to queued state", None),
        (spec.started_at, "info", "Fine-tuning job started", None),
    ]
    every = max(1, spec.total_steps // 10)
    for step in range(every, spec.stop_tokens // spec.tokens_per_step + 1, every):
        metrics = step_metrics(spec, step)
        message = f"Step {step}/{spec.total_steps}: training loss={metrics['train_loss']:.4f}"
        data = {"step": step, "total_steps": spec.total_steps, "train_loss": metrics["train_loss"]}
        raw.append((spec.time_of_tokens(step * spec.tokens_per_step), "info", message, data))
    endings = {
        "succeeded": ("info", "The job has successfully completed"),
        "failed": ("error", f"Fine-tuning job failed: {spec.error_message}"),
        "cancelled": ("info", "Fine-tuning job cancelled"),
    }
    raw.append((spec.finished_at, *endings[spec.outcome], None))
    return [
        {
            "id": f"ftevent-{_digest(spec.id, 'event', index)}",
            "object": "fine_tuning.job.event",
            "created_at": at,
            "level": level,
            "message": message,
            "type": "message" if data is None else "metrics",
            "data": data,
        }
        for index, (at, level, message, data) in enumerate(raw)
    ]


def job_checkpoints(spec: JobSpec) -> list[dict[str, Any]]:
    """A checkpoint at the end of each epoch the job reached, oldest first."""
    epochs = spec.hyperparameters.n_epochs
    last_step = spec.stop_tokens // spec.tokens_per_step
    steps = sorted({max(1, e * spec.total_steps // epochs) for e in range(1, epochs + 1)})
    return [
        {
            "id": f"ftckpt-{_digest(spec.id, 'checkpoint', step)}",
            "object": "fine_tuning.job.checkpoint",
            "created_at": spec.time_of_tokens(step * spec.tokens_per_step),
            "fine_tuning_job_id": spec.id,
            "step_number": step,
            "fine_tuned_model_checkpoint": f"{spec.model}:{spec.id}:ckpt-step-{step}",
            "result_files": [f"file-{_digest(spec.id, 'checkpoint-file', step)}"],
            "metrics": step_metrics(spec, step),
        }
        for step in steps
        if step <= last_step
    ]


_MODELS = (  # (model, training tokens per second on the simulated hardware)
    ("meta-llama/Llama-3.2-1B-Instruct", 60_000),
    ("meta-llama/Llama-3.1-8B-Instruct", 15_000),
    ("Qwen/Qwen2.5-7B-Instruct", 16_000),
    ("Qwen/Qwen2.5-32B-Instruct", 5_000),
    ("meta-llama/Llama-3.3-70B-Instruct", 2_500),
)
_ERRORS = (
    ("out_of_memory", "CUDA out of memory; try a smaller batch size or context length"),
    ("internal_error", "Training worker exited unexpectedly"),
    ("loss_diverged", "Training loss became NaN"),
    ("invalid_training_file", "Line 1042 of the training file is not valid JSON"),
)


def make_jobs(
    n: int,
    seed: int = 0,
    *,
    start: int | None = None,
    spacing: int = 600,
    flavor: Flavor = "nebius",
) -> list[JobSpec]:
    """``n`` varied jobs, about 10% failing and 5% cancelled, oldest first.

    Job ``i`` is created in ``[start + i*spacing, start + (i+1)*spacing)`` (``spacing=0``: all at
    ``start``). ``start`` defaults to ``n*spacing/2`` seconds ago, so with a clock starting now
    half the jobs exist and the rest appear as time goes on.
    """
    rng = random.Random(seed)  # noqa: S311 - a simulation, not security
    first = int(time.time()) - n * spacing // 2 if start is None else start
    return [
        _random_job(rng, first + i * spacing + rng.randrange(max(1, spacing)), flavor)
        for i in range(n)
    ]


def _random_job(rng: random.Random, created_at: int, flavor: Flavor) -> JobSpec:
    model, model_speed = rng.choice(_MODELS)
    lora_r = rng.choice((8, 16, 32))
    hp = Hyperparameters(
        batch_size=rng.choice((4, 8, 16, 32)),
        learning_rate=rng.choice((1e-5, 2e-5, 5e-5, 1e-4)),
        n_epochs=rng.randint(1, 4),
        warmup_ratio=rng.choice((0.0, 0.03, 0.1)),
        weight_decay=rng.choice((0.0, 0.01)),
        lora=rng.random() < 0.5,
        lora_r=lora_r,
        lora_alpha=2 * lora_r,
        lora_dropout=rng.choice((0.0, 0.05)),
        packing=rng.random() < 0.8,
        context_length=rng.choice((2048, 4096, 8192, 16384)),
    )
    roll = rng.random()
    outcome: Outcome = "failed" if roll < 0.10 else "cancelled" if roll < 0.15 else "succeeded"
    error_code, error_message = rng.choice(_ERRORS)
    return JobSpec(
        id=f"ftjob-{rng.getrandbits(128):032x}",
        created_at=created_at,
        model=model,
        hyperparameters=hp,
        total_steps=hp.n_epochs * rng.randint(20, 200),
        tokens_per_step=int(hp.batch_size * hp.context_length * rng.uniform(0.3, 0.9)),
        tokens_per_second=model_speed * rng.uniform(0.7, 1.3) * (1.3 if hp.lora else 1.0),
        validating_seconds=rng.randint(10, 120),
        queued_seconds=rng.randint(5, 900),
        outcome=outcome,
        stop_fraction=1.0 if outcome == "succeeded" else rng.uniform(0.05, 0.95),
        error_code=error_code,
        error_message=error_message,
        training_file=f"file-{rng.getrandbits(64):016x}",
        validation_file=f"file-{rng.getrandbits(64):016x}" if rng.random() < 0.6 else None,
        suffix=rng.choice((None, "support-bot", "sql", "summaries", "tool-use")),
        seed=rng.randrange(2**31),
        wandb_project="ftlog-demo" if rng.random() < 0.3 else None,
        estimate_skew=rng.uniform(-0.1, 0.1),
        flavor=flavor,
    )
