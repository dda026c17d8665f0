"""Model work off the event loop: jobs, the per-channel runner, the model worker thread, the prompt guard."""
from engine.jobs.guard import PromptGuard
from engine.jobs.job import Job, JobHandle
from engine.jobs.runner import JobContext, Runner
from engine.jobs.worker import ModelWorker

__all__ = ["Job", "JobContext", "JobHandle", "ModelWorker", "PromptGuard", "Runner"]
