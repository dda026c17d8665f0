"""The llama.cpp backend (llama-cpp-python): runs a GGUF file as it is, no conversion, one request at a time.

Installed by `make setup-llamacpp` (llama-cpp-python compiles llama.cpp: about 8 minutes on 2 cores the
first time). The prompt is rendered with the GGUF's own chat template (`tokenizer.chat_template`, with
Jinja2 the way llama-cpp-python's Jinja2ChatFormatter does) and tokenized here, so `count_tokens` counts
exactly the tokens that are sent. Campaigns share the model one request at a time (`can_batch = False`):
the runner hands generate_batch one request per call.

Settings mapped from `[llm.generation]`: max_new_tokens, min_new_tokens (end-of-generation tokens are
forbidden until then), temperature, top_k, top_p, repetition_penalty, do_sample (false: greedy).
llama.cpp has no beam search and no n-gram ban: num_beams > 1 and no_repeat_ngram_size are not applied.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, Callable, Sequence

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt, StopCheck, TextBackend, TokenSink
from engine.textgen.control_tokens import ROLE_MARKERS, render_prompt
from engine.textgen.models import resolve_text_model

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
    vocab = model._model.vocab
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
            texts.append(model._model.token_get_text(token))
    for token in (model.token_bos(), model.token_eos()):
        if token >= 0:
            texts.append(model._model.token_get_text(token))
    return control, eog, texts


class _MinTokens:
    """A logits processor: end-of-generation tokens are impossible until `count` tokens were generated."""

    def __init__(self, count: int, eog: list[int]) -> None:
        self.count, self.eog, self.prompt_length = count, eog, None

    def __call__(self, input_ids, scores):
        if self.prompt_length is None:
            self.prompt_length = len(input_ids)
        if len(input_ids) - self.prompt_length < self.count:
            scores[self.eog] = float("-inf")
        return scores


def completion_kwargs(settings: GenerationSettings) -> dict[str, Any]:
    """What create_completion gets for these settings (beams and n-gram bans have no llama.cpp form)."""
    kwargs: dict[str, Any] = dict(max_tokens=settings.max_new_tokens, repeat_penalty=settings.repetition_penalty,
                                  min_p=0.0, typical_p=1.0)  # llama.cpp's own extra samplers off, as in transformers
    if settings.do_sample:
        kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p,
                      seed=random.getrandbits(32))  # random.seed(...) makes sampled runs repeatable
    else:
        kwargs.update(temperature=0.0, top_k=1, top_p=1.0)  # greedy
    return kwargs


class LlamaCppBackend(TextBackend):
    """llama.cpp on a GGUF file (llama-cpp-python): streaming, cancellation, one request at a time."""
    can_batch = False  # one request at a time; the runner sends one per call

    def __init__(self, model, counter, name: str, llama_cpp) -> None:
        self.model, self.name = model, name
        # A second, vocabulary-only copy counts tokens on the event loop while the worker thread
        # generates with the first.
        self._counter = counter
        metadata = model.metadata or {}
        self.template = metadata.get("tokenizer.chat_template") or ""
        self.is_chat = bool(self.template)
        self.add_bos = bool(model._model.add_bos_token()) and not self.is_chat  # a chat template writes its own
        self.control_ids, self.eog_ids, texts = _vocab_specials(model, llama_cpp)
        texts += [m for m in ROLE_MARKERS if m in self.template]
        self.control_markers = tuple(sorted({t for t in texts if t and t.strip()}, key=lambda m: (-len(m), m)))
        self._formatter = None
        if self.is_chat:
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter

            def text_of(token: int) -> str:
                return model._model.token_get_text(token) if token >= 0 else ""

            self._formatter = Jinja2ChatFormatter(self.template, eos_token=text_of(model.token_eos()),
                                                  bos_token=text_of(model.token_bos()), add_generation_prompt=True)

    @classmethod
    def load(
        cls, spec: str, *, n_threads: int = 0, n_gpu_layers: int = 0, context_tokens: int = 2048,
        progress: Callable[[str], None] = log.info,
    ) -> "LlamaCppBackend":
        llama_cpp = import_llama_cpp()
        from llama_cpp._internals import LlamaModel

        path = gguf_path(spec)
        where = "CPU" if n_gpu_layers == 0 else f"{'all' if n_gpu_layers < 0 else n_gpu_layers} layers on the GPU"
        progress(f"loading text model {path.stem} with llama.cpp ({where})")
        # Prompts are read with as many threads as replies are written: llama.cpp's threads wait for
        # each other spinning, and a thread more than the CPUs free made a 121-token prompt take 5-13 s
        # instead of 1 s on a busy 2-core machine (bench/backends.py).
        threads = n_threads or max((os.cpu_count() or 2) // 2, 1)
        try:
            model = llama_cpp.Llama(
                model_path=str(path), n_ctx=context_tokens, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers, last_n_tokens_size=context_tokens,  # the penalty sees the whole reply
                verbose=False)
            params = llama_cpp.llama_model_default_params()
            params.vocab_only = True
            counter = LlamaModel(path_model=str(path), params=params, verbose=False)
        except Exception as exc:  # a truncated or foreign file fails inside llama.cpp
            raise Unavailable(f"cannot load GGUF file {path} with llama.cpp: {type(exc).__name__}: {exc}") from exc
        return cls(model, counter, path.stem, llama_cpp)

    # --- the prompt ---
    def render(self, prompt: Prompt) -> str:  # players cannot write control tokens
        return render_prompt(prompt, self.control_markers, self.is_chat,
                             lambda messages: self._formatter(messages=messages).prompt)

    def tokens(self, text: str, model=None) -> list[int]:
        """Exactly the tokens sent for a rendered prompt (the template's control tokens parsed as such)."""
        return (model or self._counter).tokenize(text.encode("utf-8"), self.add_bos, True)

    def count_tokens(self, text: str) -> int:
        return len(self.tokens(text))

    # --- generating ---
    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]:
        return [self._generate(i, request, on_token, should_stop) for i, request in enumerate(requests)]

    def _generate(self, row: int, request: GenRequest, on_token: TokenSink, should_stop: StopCheck) -> str:
        from llama_cpp import LogitsProcessorList, StoppingCriteriaList

        settings = request.settings
        kwargs = completion_kwargs(settings)
        if settings.min_new_tokens and self.eog_ids:
            kwargs["logits_processor"] = LogitsProcessorList([_MinTokens(settings.min_new_tokens, sorted(self.eog_ids))])
        tokens = self.tokens(request.text, self.model._model)
        if not tokens and self.model.token_bos() >= 0:  # llama.cpp cannot start from nothing
            tokens = [self.model.token_bos()]
        stream = self.model.create_completion(
            tokens, stream=True,
            stopping_criteria=StoppingCriteriaList([lambda ids, logits: bool(should_stop(row))]), **kwargs)
        pieces: list[str] = []
        try:
            for chunk in stream:
                piece = chunk["choices"][0]["text"]
                if piece:
                    pieces.append(piece)
                    on_token(row, piece)
                if should_stop(row):
                    break
        finally:
            stream.close()  # a cancelled request stops here, mid-generation
        return "".join(pieces)
