"""The transformers backend: chat or continuation prompts, left-padded batches, per-row streaming."""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Callable, Sequence

from engine.errors import Unavailable
from engine.generation import GenerationSettings
from engine.textgen.base import GenRequest, Prompt, StopCheck, TextBackend, TokenSink
from engine.textgen.control_tokens import control_markers, render_prompt
from engine.textgen.models import ModelSource, convert_gguf, resolve_text_model
from engine.textgen.voice import VoiceGuard, vocabulary

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    return getattr(torch, dtype)


def _meta_parameters(model) -> list[str]:
    return [name for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if tensor.device.type == "meta"]


def _check_loaded(model) -> None:
    """Every weight loaded: a tied layer left unloaded is tied again; a weight the checkpoint lacks is a
    clear error now, not a "meta tensor" error at the first turn."""
    if _meta_parameters(model):
        model.tie_weights()
    if missing := _meta_parameters(model):
        raise RuntimeError(f"the checkpoint has no weights for {', '.join(missing[:3])}")


class _RowStreamer:
    """A transformers streamer for a whole batch: sends each row's new text as it appears."""

    def __init__(self, tokenizer, rows: list[int], sink: TokenSink, stop_ids: set[int]) -> None:
        self.tokenizer, self.rows, self.sink, self.stop_ids = tokenizer, rows, sink, stop_ids
        self.ids: list[list[int]] = [[] for _ in rows]
        self.sent = [""] * len(rows)
        self.done = [False] * len(rows)
        self.prompt_seen = False

    def put(self, value) -> None:
        if not self.prompt_seen:  # generate() first hands over the prompt itself
            self.prompt_seen = True
            return
        for r, tokens in enumerate(value.reshape(len(self.rows), -1).tolist()):
            for token in tokens:
                if self.done[r]:
                    break
                if token in self.stop_ids:
                    self.done[r] = True
                else:
                    self.ids[r].append(token)
            self._flush(r)

    def _flush(self, r: int) -> None:
        text = self.tokenizer.decode(self.ids[r], skip_special_tokens=True)
        # Wait for the rest of a multi-byte character, and never send text that decoding took back.
        if text.endswith("\ufffd") or not text.startswith(self.sent[r]) or text == self.sent[r]:
            return
        self.sink(self.rows[r], text[len(self.sent[r]) :])
        self.sent[r] = text

    def end(self) -> None:
        pass


class TransformersBackend(TextBackend):
    """A transformers causal LM: chat or continuation prompts, left-padded batches, per-row streaming."""
    can_batch = True

    def __init__(self, model, tokenizer, count_tokenizer, name: str) -> None:
        self.model, self.tokenizer, self.name = model, tokenizer, name
        # A second tokenizer for counting on the event loop: a fast tokenizer in use by generate()
        # in the worker thread must not be touched from another thread.
        self._counter = count_tokenizer
        self.is_chat = bool(getattr(tokenizer, "chat_template", None))
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.stop_ids = {t for t in [*eos, tokenizer.eos_token_id] if t is not None}
        self.control_markers = control_markers(tokenizer)
        self._voice_guard: VoiceGuard | None = None  # built at the first narration (decodes the vocabulary)

    @classmethod
    def load(
        cls, spec: str, *, device: str = "auto", dtype: str = "auto", cache_dir: str = "data/models",
        progress: Callable[[str], None] = log.info,
    ) -> "TransformersBackend":
        source = resolve_text_model(spec)
        folder = convert_gguf(source, cache_dir, progress) if source.gguf_file else source.location
        return cls.from_folder(folder, device=device, dtype=dtype, name=source.name, progress=progress)

    @classmethod
    def from_folder(
        cls, folder: str, *, device: str = "auto", dtype: str = "auto", name: str | None = None,
        progress: Callable[[str], None] = log.info,
    ) -> "TransformersBackend":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = pick_device(device)
        progress(f"loading text model {name or folder} on {device}")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            counter = AutoTokenizer.from_pretrained(str(folder))
            model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=pick_dtype(dtype, device))
            _check_loaded(model)
        except Exception as exc:
            raise Unavailable(f"cannot load text model {folder}: {type(exc).__name__}: {exc}") from exc
        model.to(device).eval()
        return cls(model, tokenizer, counter, name or ModelSource(str(folder)).name)

    def render(self, prompt: Prompt) -> str:  # players cannot write control tokens
        return render_prompt(prompt, self.control_markers, self.is_chat, lambda messages: (
            self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)))

    def count_tokens(self, text: str) -> int:
        return len(self._counter(text, add_special_tokens=False)["input_ids"])

    def generate_batch(
        self, requests: Sequence[GenRequest], on_token: TokenSink, should_stop: StopCheck
    ) -> list[str]:
        """Requests with equal settings share one left-padded generate call."""
        groups: dict[GenerationSettings, list[int]] = defaultdict(list)
        for i, request in enumerate(requests):
            groups[request.settings].append(i)
        results = [""] * len(requests)
        for settings, rows in groups.items():
            texts = self._generate_rows([requests[i].text for i in rows], settings, rows, on_token, should_stop,
                                        [requests[i].voice for i in rows])
            for i, text in zip(rows, texts):
                results[i] = text
        return results

    def voice_guard(self) -> VoiceGuard:
        if self._voice_guard is None:
            self._voice_guard = VoiceGuard(vocabulary(len(self.tokenizer), lambda t: self.tokenizer.decode([t])))
        return self._voice_guard

    def _generate_rows(self, texts, settings: GenerationSettings, rows, on_token, should_stop,
                       voices=()) -> list[str]:
        import torch
        from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

        class StopRows(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                flags = torch.tensor([bool(should_stop(i)) for i in rows], device=input_ids.device)
                return flags.repeat_interleave(input_ids.shape[0] // len(rows))  # beams share a row

        # No token_type_ids: transformers 4 tokenizers (the auto-gptq profile) add them, and generate()
        # of most decoder models refuses them; transformers 5 never sends them.
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=not self.is_chat,
                             return_token_type_ids=False)
        enc = enc.to(self.model.device)
        processors = LogitsProcessorList()
        if any(voices):
            guard, tokenizer, start = self.voice_guard(), self.tokenizer, enc["input_ids"].shape[1]

            class KeepVoice(LogitsProcessor):
                def __call__(self, input_ids, scores):
                    per_row = input_ids.shape[0] // len(rows)  # beams share a row
                    for b in range(input_ids.shape[0]):
                        voice = voices[b // per_row]
                        if voice is not None:
                            written = tokenizer.decode(input_ids[b, start:], skip_special_tokens=True)
                            banned = guard.banned(written, voice)
                            if banned:
                                scores[b, banned] = float("-inf")
                    return scores

            processors.append(KeepVoice())
        kwargs = dict(
            max_new_tokens=settings.max_new_tokens, min_new_tokens=settings.min_new_tokens,
            do_sample=settings.do_sample, num_beams=settings.num_beams,
            repetition_penalty=settings.repetition_penalty, no_repeat_ngram_size=settings.no_repeat_ngram_size,
            pad_token_id=self.tokenizer.pad_token_id, stopping_criteria=StoppingCriteriaList([StopRows()]),
            logits_processor=processors,
        )
        if settings.do_sample:
            kwargs.update(temperature=settings.temperature, top_k=settings.top_k, top_p=settings.top_p)
        # transformers cannot stream beam search: those requests get their text in one piece at the end.
        streamer = _RowStreamer(self.tokenizer, rows, on_token, self.stop_ids) if settings.num_beams == 1 else None
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs, streamer=streamer)
        new = out[:, enc["input_ids"].shape[1] :]
        results = []
        for r, ids in enumerate(new.tolist()):
            cut = next((k for k, t in enumerate(ids) if t in self.stop_ids), len(ids))
            text = self.tokenizer.decode(ids[:cut], skip_special_tokens=True)
            sent = streamer.sent[r] if streamer else ""
            if text.startswith(sent) and text != sent:
                on_token(rows[r], text[len(sent) :])
            results.append(text)
        return results
