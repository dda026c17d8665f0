"""The llama.cpp backend (llama-cpp-python): runs a GGUF file as it is, no conversion, channels decoded together.

Installed by `make setup-llamacpp` (llama-cpp-python compiles llama.cpp: about 8 minutes on 2 cores the
first time). The prompt is rendered with the GGUF's own chat template (`tokenizer.chat_template`, with
Jinja2 the way llama-cpp-python's Jinja2ChatFormatter does) and tokenized here, so `count_tokens` counts
exactly the tokens that are sent. The runner's batch (up to runner.batch_size channels) decodes together
in one llama.cpp context (LlamaCppBackend). llama.cpp's own samplers draw each token.

Settings mapped from `[llm.generation]`: max_new_tokens, min_new_tokens (end-of-generation tokens are
forbidden until then), temperature, top_k, top_p, repetition_penalty, do_sample (false: greedy).
llama.cpp has no beam search and no n-gram ban: num_beams > 1 and no_repeat_ngram_size are not applied.
"""
from __future__ import annotations

import codecs
import ctypes
import logging
import os
import random
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt, StopCheck, TextBackend, TokenSink
from engine.textgen.control_tokens import ROLE_MARKERS, render_prompt
from engine.textgen.models import resolve_text_model
from engine.textgen.voice import Voice, VoiceGuard, vocabulary

log = logging.getLogger(__name__)

MISSING = 'llm.backend = "llama.cpp" needs `make setup-llamacpp` (the llama-cpp-python package is not installed)'


def import_llama_cpp():
    """The llama_cpp module, or one clear line saying how to install it."""
    try:
        import llama_cpp
    except ImportError:
        raise Unavailable(MISSING) from None
    return llama_cpp


def gguf_path(spec: str) -> Path:
    """The GGUF file behind `llm.model`: bundled:smollm2 or a .gguf path (nothing else runs on llama.cpp)."""
    source = resolve_text_model(spec)
    if not source.gguf_file:
        raise Unavailable(f'llm.backend = "llama.cpp" runs GGUF files; {spec!r} is not one '
                          '(give a .gguf file or bundled:smollm2, or use backend = "transformers")')
    return Path(source.location) / source.gguf_file


def _vocab_specials(model, llama_cpp) -> tuple[set[int], set[int], list[str]]:
    """(control token ids, end-of-generation ids, the texts a prompt must not contain)."""
    vocab = model.vocab
    control, eog, texts = set(), set(), []
    special_attrs = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
    for token in range(model.n_vocab()):
        attr = llama_cpp.llama_vocab_get_attr(vocab, token)
        if llama_cpp.llama_vocab_is_eog(vocab, token):
            eog.add(token)
        if attr & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL:
            control.add(token)
        if attr & special_attrs:
            # Tokenized with special=True, these strings become the token itself (user-defined ones
            # even without it): a player must not be able to write them.
            texts.append(model.token_get_text(token))
    for token in (model.token_bos(), model.token_eos()):
        if token >= 0:
            texts.append(model.token_get_text(token))
    return control, eog, texts


class _MinTokens:
    """End-of-generation tokens are impossible until `count` tokens were generated."""

    def __init__(self, count: int, eog: list[int]) -> None:
        self.count, self.eog = count, eog

    def __call__(self, logits, written: int, text: str) -> None:
        if written < self.count:
            logits[self.eog] = float("-inf")


class _KeepVoice:
    """The narration stays in the DM's voice (engine/textgen/voice.py)."""

    def __init__(self, guard: VoiceGuard, voice: Voice) -> None:
        self.guard, self.voice = guard, voice

    def __call__(self, logits, written: int, text: str) -> None:
        banned = self.guard.banned(text, self.voice)
        if banned:
            logits[banned] = float("-inf")


def sampler_chain(settings: GenerationSettings, context_tokens: int):
    """llama.cpp's own samplers for these settings: the repetition penalty over the prompt and the reply
    (as transformers applies it), then greedy or top-k, top-p, temperature and a draw (llama.cpp's extra
    samplers, min-p and typical, left out as transformers has them)."""
    from llama_cpp._internals import LlamaSampler

    chain = LlamaSampler()
    chain.add_penalties(n_vocab=0, penalty_last_n=context_tokens, penalty_repeat=settings.repetition_penalty,
                        penalty_freq=0.0, penalty_present=0.0)
    if settings.do_sample:
        chain.add_top_k(settings.top_k)
        chain.add_top_p(settings.top_p, 1)
        chain.add_temp(settings.temperature)
        chain.add_dist(random.getrandbits(32))  # random.seed(...) makes sampled runs repeatable
    else:
        chain.add_greedy()
    return chain


class _Sequence:
    """One request in a batch: its slot (llama.cpp sequence id), its samplers and what it has written."""

    def __init__(self, row: int, request: GenRequest, slot: int, prompt: list[int], processors: list, chain) -> None:
        self.row, self.request, self.slot, self.prompt = row, request, slot, prompt
        self.processors, self.chain = processors, chain
        self.generated: list[int] = []
        self.text = ""
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character split across tokens
        self.pending = -1  # the token drawn last, decoded at the next step
        self.done = False


class LlamaCppBackend(TextBackend):
    """llama.cpp on a GGUF file (llama-cpp-python): streaming, cancellation, several channels decoded together.

    One llama.cpp context holds `slots` sequences of `context_tokens` each (llama.cpp's own server does
    the same with its parallel slots): the requests of a batch read their prompts one after another, then
    every step decodes one new token of each in a single llama_decode, so four channels cost little more
    than one on a CPU. A slot keeps its last prompt and reply: the next request that starts the same way
    (a campaign's next turn) reads only what is new.
    """
    can_batch = True

    def __init__(self, model, counter, context, *, name: str, slots: int, slot_tokens: int, n_threads: int,
                 llama_cpp) -> None:
        self.model, self.context, self.name = model, context, name
        self.slots, self.slot_tokens, self.n_threads = slots, slot_tokens, n_threads
        # A second, vocabulary-only copy counts tokens on the event loop while the worker thread
        # generates with the first.
        self._counter = counter
        self._cached: list[list[int]] = [[] for _ in range(slots)]  # what each slot's memory holds
        self._batch = None  # the decode batch, built at the first step
        self._voice_guard: VoiceGuard | None = None  # built at the first narration (decodes the vocabulary)
        self._llama_cpp = llama_cpp
        self.template = model.metadata().get("tokenizer.chat_template") or ""
        self.is_chat = bool(self.template)
        self.add_bos = bool(model.add_bos_token()) and not self.is_chat  # a chat template writes its own
        self.control_ids, self.eog_ids, texts = _vocab_specials(model, llama_cpp)
        texts += [m for m in ROLE_MARKERS if m in self.template]
        self.control_markers = tuple(sorted({t for t in texts if t and t.strip()}, key=lambda m: (-len(m), m)))
        self._formatter = None
        if self.is_chat:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(token: int) -> str:
                return model.token_get_text(token) if token >= 0 else ""

            self._formatter = Jinja2ChatFormatter(self.template, eos_token=text_of(model.token_eos()),
                                                  bos_token=text_of(model.token_bos()), add_generation_prompt=True)

    @classmethod
    def load(
        cls, spec: str, *, n_threads: int = 0, n_gpu_layers: int = 0, context_tokens: int = 2048, slots: int = 1,
        progress: Callable[[str], None] = log.info,
    ) -> "LlamaCppBackend":
        """`slots`: how many requests decode together (the runner's batch_size)."""
        llama_cpp = import_llama_cpp()
        from llama_cpp._internals import LlamaContext, LlamaModel
        from llama_cpp._logger import set_verbose

        set_verbose(False)  # llama.cpp's own log: errors only

        path = gguf_path(spec)
        where = "CPU" if n_gpu_layers == 0 else f"{'all' if n_gpu_layers < 0 else n_gpu_layers} layers on the GPU"
        progress(f"loading text model {path.stem} with llama.cpp ({where}, {slots} at once)")
        # Prompts are read with as many threads as replies are written: llama.cpp's threads wait for
        # each other spinning, and a thread more than the CPUs free made a 121-token prompt take 5-13 s
        # instead of 1 s on a busy 2-core machine (bench/backends.py).
        # Every CPU the process may use: on an idle 2-core machine one thread made 46 tokens/s, two 77.
        threads = n_threads or max(len(os.sched_getaffinity(0)), 1)
        try:
            params = llama_cpp.llama_model_default_params()
            params.n_gpu_layers = 0x7FFFFFFF if n_gpu_layers < 0 else n_gpu_layers
            model = LlamaModel(path_model=str(path), params=params, verbose=False)
            counter_params = llama_cpp.llama_model_default_params()
            counter_params.vocab_only = True
            counter = LlamaModel(path_model=str(path), params=counter_params, verbose=False)
            context_params = llama_cpp.llama_context_default_params()
            context_params.n_ctx = context_tokens * slots  # each sequence gets context_tokens
            context_params.n_seq_max = slots
            context_params.n_batch = context_params.n_ubatch = min(512, context_tokens)
            context_params.n_threads = context_params.n_threads_batch = threads
            context = LlamaContext(model=model, params=context_params, verbose=False)
        except Exception as exc:  # a truncated or foreign file fails inside llama.cpp
            raise Unavailable(f"cannot load GGUF file {path} with llama.cpp: {type(exc).__name__}: {exc}") from exc
        return cls(model, counter, context, name=path.stem, slots=slots, slot_tokens=context_tokens,
                   n_threads=threads, llama_cpp=llama_cpp)

    # --- the prompt ---
    def render(self, prompt: Prompt) -> str:  # players cannot write control tokens
        return render_prompt(prompt, self.control_markers, self.is_chat,
                             lambda messages: self._formatter(messages=messages).prompt)

    def tokens(self, text: str, model=None) -> list[int]:
        """Exactly the tokens sent for a rendered prompt (the template's control tokens parsed as such)."""
        return (model or self._counter).tokenize(text.encode("utf-8"), self.add_bos, True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokens(text))

    def piece(self, token: int) -> bytes:
        """A token's bytes as the reply shows them (control tokens as nothing)."""
        buffer = ctypes.create_string_buffer(64)
        size = self._llama_cpp.llama_token_to_piece(self.model.vocab, token, buffer, 64, 0, False)
        if size < 0:  # longer than the buffer: -size is its length
            buffer = ctypes.create_string_buffer(-size)
            size = self._llama_cpp.llama_token_to_piece(self.model.vocab, token, buffer, -size, 0, False)
        return buffer.raw[:size]

    def voice_guard(self) -> VoiceGuard:
        if self._voice_guard is None:
            self._voice_guard = VoiceGuard(vocabulary(
                self.model.n_vocab(), lambda t: self.piece(t).decode("utf-8", errors="ignore")))
        return self._voice_guard

    # --- generating ---
    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]:
        results: list[str] = []
        for start in range(0, len(requests), self.slots):  # more requests than slots: in turns
            group = self._start(requests[start:start + self.slots], start)
            self._decode_together(group, on_token, should_stop)
            results += [sequence.text for sequence in group]
        return results

    def _start(self, requests: Sequence[GenRequest], first_row: int) -> list[_Sequence]:
        """Each request in the slot whose memory starts most like it, its prompt read, its first token drawn."""
        free = list(range(self.slots))
        group = []
        for offset, request in enumerate(requests):
            prompt = self.tokens(request.text, self.model)
            if not prompt and self.model.token_bos() >= 0:  # llama.cpp cannot start from nothing
                prompt = [self.model.token_bos()]
            slot = max(free, key=lambda s: _shared(self._cached[s], prompt))
            free.remove(slot)
            processors = []
            if request.settings.min_new_tokens and self.eog_ids:
                processors.append(_MinTokens(request.settings.min_new_tokens, sorted(self.eog_ids)))
            if request.voice is not None:
                processors.append(_KeepVoice(self.voice_guard(), request.voice))
            chain = sampler_chain(request.settings, self.slot_tokens)
            for token in prompt:  # the repetition penalty sees the prompt, as in transformers
                chain.accept(token)
            sequence = _Sequence(first_row + offset, request, slot, prompt, processors, chain)
            self._read_prompt(sequence)
            group.append(sequence)
        return group

    def _read_prompt(self, sequence: _Sequence) -> None:
        prompt, slot = sequence.prompt, sequence.slot
        keep = min(_shared(self._cached[slot], prompt), len(prompt) - 1)  # at least one token read anew
        self.context.kv_cache_seq_rm(slot, keep, -1)
        self._cached[slot] = prompt[:keep]
        step = self.context.params.n_batch
        for at in range(keep, len(prompt), step):
            chunk = prompt[at:at + step]
            batch = self._batch_for(len(chunk))
            for i, token in enumerate(chunk):
                self._put(batch, i, token, at + i, slot, logits=at + i == len(prompt) - 1)
            batch.batch.n_tokens = len(chunk)
            self.context.decode(batch)
            self._cached[slot] += chunk
        sequence.pending = self._draw(sequence, len(chunk) - 1)

    def _decode_together(self, group: list[_Sequence], on_token: TokenSink, should_stop: StopCheck) -> None:
        while True:
            for sequence in group:
                if not sequence.done:
                    self._take(sequence, on_token, should_stop)
            running = [s for s in group if not s.done]
            if not running:
                return
            batch = self._batch_for(len(running))
            for i, sequence in enumerate(running):
                self._put(batch, i, sequence.pending, len(self._cached[sequence.slot]), sequence.slot, logits=True)
                self._cached[sequence.slot].append(sequence.pending)
            batch.batch.n_tokens = len(running)
            self.context.decode(batch)
            for i, sequence in enumerate(running):
                sequence.pending = self._draw(sequence, i)

    def _take(self, sequence: _Sequence, on_token: TokenSink, should_stop: StopCheck) -> None:
        """The drawn token joins the reply (and streams), or the reply ends."""
        token, settings = sequence.pending, sequence.request.settings
        if token in self.eog_ids or should_stop(sequence.row):
            sequence.done = True
            return
        sequence.generated.append(token)
        piece = sequence.decoder.decode(self.piece(token))
        if piece:
            sequence.text += piece
            on_token(sequence.row, piece)
        full = len(self._cached[sequence.slot]) + 1 >= self.slot_tokens
        if len(sequence.generated) >= settings.max_new_tokens or full or should_stop(sequence.row):
            sequence.done = True

    def _draw(self, sequence: _Sequence, index: int) -> int:
        """The next token of a sequence from the logits at `index` of the last batch, after its processors."""
        if sequence.processors:
            logits = np.ctypeslib.as_array(self.context.get_logits_ith(index), shape=(self.model.n_vocab(),))
            for processor in sequence.processors:  # in place: the samplers read these logits
                processor(logits, len(sequence.generated), sequence.text)
        return sequence.chain.sample(self.context, index)  # accepts the token too (its penalty history)

    def _batch_for(self, size: int):
        from llama_cpp._internals import LlamaBatch

        if self._batch is None or self._batch._n_tokens < size:
            self._batch = LlamaBatch(n_tokens=max(size, self.context.params.n_batch), embd=0, n_seq_max=1,
                                     verbose=False)
        return self._batch

    @staticmethod
    def _put(batch, i: int, token: int, position: int, slot: int, *, logits: bool) -> None:
        raw = batch.batch
        raw.token[i], raw.pos[i], raw.n_seq_id[i] = token, position, 1
        raw.seq_id[i][0], raw.logits[i] = slot, logits


def _shared(cached: list[int], prompt: list[int]) -> int:
    """How many tokens two token lists share from their start."""
    count = 0
    for a, b in zip(cached, prompt):
        if a != b:
            break
        count += 1
    return count
