"""The one place that builds the engine's parts from the config, and closes them again."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

import aiohttp

from pathlib import Path

from bot.config import Config, PicturesConfig, TranslationConfig
from engine.errors import Unavailable
from engine.jobs import ModelWorker, PromptGuard, Runner
from engine.memory import Embedder, MemoryBank, PipelineSummarizer, Summaries
from engine.pictures import Painter, PictureClient, PictureSettings
from engine.store import Store
from engine.table import CampaignEdits, JobTable, Narrator, NarratorSettings, ScenePrompts, TableLanguage
from engine.table.recap import Recaps
from engine.textgen.base import TextBackend
from engine.textgen.llamacpp_backend import LlamaCppBackend, gguf_path, import_llama_cpp
from engine.textgen.openai_backend import OpenAIBackend, ServerSettings
from engine.textgen.transformers_backend import TransformersBackend, pick_device
from engine.translation import LibreTranslateProvider, LLMProvider, Provider, Translation, YandexProvider

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class Services:
    config: Config
    store: Store
    text: ModelWorker[TextBackend]
    embedder: ModelWorker[Embedder]
    summarizer: ModelWorker[PipelineSummarizer] | None
    memory: MemoryBank
    narrator: Narrator  # the turn pipeline
    edits: CampaignEdits  # every change outside a turn
    runner: Runner
    http: aiohttp.ClientSession  # the one shared session for every HTTP service
    pictures: PictureClient | None  # None: pictures are off
    painter: Painter
    translation: Translation

    @property
    def backend(self) -> TextBackend:
        assert self.text.model is not None
        return self.text.model

    async def close(self) -> None:
        await self.runner.close()
        await self.http.close()
        if isinstance(self.text.model, OpenAIBackend):
            await self.text.model.aclose()
        for worker in (self.text, self.embedder, self.summarizer):
            if worker is not None:
                await worker.stop()
        await self.store.close()


def choose_backend(config: Config) -> tuple[str, str]:
    """llm.backend = "auto": llama.cpp on a CPU when it is installed and the model is a GGUF file (the
    bundled one is), transformers on a GPU or otherwise; returns the backend and why."""
    llm = config.llm
    if llm.backend != "auto":
        return llm.backend, "llm.backend"
    device = pick_device(llm.device)
    if device != "cpu":
        return "transformers", f"a {device} device (llama.cpp here runs on the CPU)"
    try:
        gguf_path(llm.model)
    except Unavailable:
        return "transformers", f"{llm.model} is not a GGUF file"
    try:
        import_llama_cpp()
    except Unavailable:
        return "transformers", "llama.cpp is not installed (make setup-llamacpp: several times faster on a CPU)"
    return "llama.cpp", "a CPU, llama.cpp installed and a GGUF model"


def text_loader(config: Config, progress: Progress) -> Callable[[], TextBackend]:
    llm = config.llm
    backend, why = choose_backend(config)
    if llm.backend == "auto":
        log.info("text backend: %s (auto: %s)", backend, why)
        progress(f"text backend: {backend} ({why})")
    if backend == "openai":
        server = llm.server
        return lambda: OpenAIBackend(ServerSettings(
            base_url=llm.base_url, model=llm.model, api_key=llm.api_key(), api=server.api,
            connect_timeout_s=server.connect_timeout_s, read_timeout_s=server.read_timeout_s,
            retries=server.retries, max_concurrency=server.max_concurrency, sampling_extras=server.sampling_extras))
    if backend == "llama.cpp":
        import_llama_cpp()  # one clear line now ("needs `make setup-llamacpp`"), before any model loads
        gguf_path(llm.model)
        return lambda: LlamaCppBackend.load(
            llm.model, n_threads=llm.llamacpp.n_threads, n_gpu_layers=llm.llamacpp.n_gpu_layers,
            context_tokens=llm.context_tokens, slots=config.runner.batch_size, progress=progress)
    if backend == "auto-gptq":
        from engine.textgen.gptq_backend import load_gptq, require_auto_gptq

        require_auto_gptq()  # one clear line now ("needs `make setup-gptq`"), before any model loads
        return lambda: load_gptq(llm.model, device=llm.device, dtype=llm.dtype, progress=progress)
    return lambda: TransformersBackend.load(
        llm.model, device=llm.device, dtype=llm.dtype, cache_dir=llm.cache_dir, progress=progress
    )


def picture_client(http: aiohttp.ClientSession, pictures: PicturesConfig) -> PictureClient | None:
    if not pictures.enabled:
        return None
    return PictureClient(http, PictureSettings(
        url=pictures.url, user=pictures.user, password=pictures.password(), steps=pictures.steps,
        width=pictures.width, height=pictures.height, cfg_scale=pictures.cfg_scale,
        sampler_name=pictures.sampler_name, negative_prompt=pictures.negative_prompt,
        checkpoint=pictures.checkpoint, timeout_s=pictures.timeout_s))


def translation_provider(config: Config, http: aiohttp.ClientSession, backend: TextBackend) -> Provider | None:
    tr: TranslationConfig = config.translation
    if tr.provider == "yandex":
        base = tr.url.rstrip("/")
        key_file = Path(config.storage.path).parent / "yandex.key"
        return YandexProvider(tr.timeout_s, str(key_file), site_url=base and base + "/",
                              api_url=base and base + "/api/v1/tr.json/")
    if tr.provider == "libretranslate":
        return LibreTranslateProvider(http, tr.url, tr.timeout_s, tr.api_key())
    if tr.provider == "llm":
        return LLMProvider(backend.render, backend.count_tokens, config.llm.context_tokens)
    return None


def set_cpu_threads(threads: int) -> None:
    """torch's CPU threads, for every model of the process: torch takes all cores, and on a machine where
    other work competes for them its threads wait for each other (measured here: 1 token/s instead of 12)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


@dataclass(frozen=True)
class Table:
    """The table's parts, built together: what the runner, the cogs and the terminal need of them."""
    narrator: Narrator
    edits: CampaignEdits
    jobs: JobTable


def build_table(store: Store, memory: MemoryBank, backend: TextBackend, settings: NarratorSettings,
                translation: Translation, summarizer: ModelWorker[PipelineSummarizer] | None = None) -> Table:
    """The turn pipeline, the edits outside a turn and the job table over one store, memory and model
    (also for drills and benchmarks that build the engine without the rest of the bot)."""
    language = TableLanguage(translation, store)
    summaries = Summaries(store, memory, backend, context_tokens=settings.context_tokens,
                          summary_max_tokens=settings.summary_max_tokens, summarizer=summarizer)
    narrator = Narrator(store, memory, backend, settings, language, summaries)
    jobs = JobTable(store, narrator, ScenePrompts(store, backend, language), summaries,
                    Recaps(store, backend, language, settings))
    return Table(narrator, CampaignEdits(store, memory, settings, language), jobs)


async def build_services(
    config: Config, progress: Progress = log.info, *, text_model: TextBackend | None = None,
    embed_model: Embedder | None = None,
) -> Services:
    """Open the store, load the models (in their own threads, at the same time) and start the runner.

    Tests and benchmarks may hand in models they loaded already; everything else is built here.
    """
    mem = config.memory
    set_cpu_threads(config.llm.threads)
    store = await Store.open(config.storage.path)
    workers: list[ModelWorker] = []
    http: aiohttp.ClientSession | None = None
    try:
        text = ModelWorker("text", (lambda: text_model) if text_model else text_loader(config, progress))
        embedder = ModelWorker("embedder", (lambda: embed_model) if embed_model else (
            lambda: Embedder.load(mem.embedder, device=pick_device(config.llm.device))))
        workers = [text, embedder]
        summarizer = None
        if mem.summarizer:
            summarizer = ModelWorker(
                "summarizer", lambda: PipelineSummarizer.load(mem.summarizer, mem.summary_max_tokens, pick_device(config.llm.device))
            )
            workers.append(summarizer)
        progress("loading models: " + ", ".join(w.name for w in workers))
        await asyncio.gather(*(w.start() for w in workers))
        backend, embed = text.model, embedder.model
        assert backend is not None and embed is not None
        progress(f"models ready: {backend.name}, {embed.id}")
        memory = MemoryBank(store, embedder, embed.id, chunk_chars=mem.chunk_chars)
        # No kept-alive connections: the picture server is asked once a minute at most, and an idle
        # pool's cleanup timers would keep the process (and test harnesses) from ever being idle.
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))
        tr = config.translation
        translation = Translation(translation_provider(config, http, backend), config.llm.language,
                                  cache_size=tr.cache_size, failures_to_pause=tr.pause_after, pause_s=tr.pause_s)
        settings = NarratorSettings(
            generation=config.llm.generation, context_tokens=config.llm.context_tokens, top_k=mem.top_k,
            min_score=mem.min_score, summarize_every=mem.summarize_every, recent_turns=mem.recent_turns,
            action_max_chars=config.discord.action_max_chars, summary_max_tokens=mem.summary_max_tokens,
            picture_spoiler=config.pictures.spoiler, recap_after_hours=mem.recap_after_hours)
        table = build_table(store, memory, backend, settings, translation, summarizer)
        run = config.runner
        # A model server schedules its own batches: as many jobs run at once as it takes requests.
        jobs_at_once = config.llm.server.max_concurrency if backend.concurrent else run.batch_size
        runner = Runner(table.jobs, text, batch_size=jobs_at_once, batch_wait_ms=run.batch_wait_ms,
                        max_pending_per_channel=run.max_pending_per_channel,
                        max_pending_total=run.max_pending_total, job_timeout_s=run.job_timeout_s,
                        guard=PromptGuard(backend.count_tokens, config.llm.context_tokens))
    except BaseException:
        if http is not None:
            await http.close()
        for worker in workers:
            await worker.stop()
        await store.close()
        raise
    return Services(config, store, text, embedder, summarizer, memory, table.narrator, table.edits, runner, http,
                    picture_client(http, config.pictures), Painter(), translation)
