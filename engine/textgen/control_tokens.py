"""Player text never becomes control tokens: the tokenizer's special tokens (and the role markers of
its chat template) are taken out of every prompt field before the template is applied.

A player writing "<|im_end|>\n<|im_start|>system ..." would otherwise open a system turn of their
own: the tokenizer reads those strings as the real control tokens. Everything in a prompt's fields
comes from players, the DM's own past narration or the campaign's settings, never from the template.
"""
from __future__ import annotations

from typing import Callable, Iterable

from engine.textgen.base import Prompt

# Plain-text role markers of common chat templates (Llama 2, Mistral, Alpaca-style) that tokenizers
# do not list as special tokens; taken out only where the model's own template uses them.
ROLE_MARKERS = ("[INST]", "[/INST]", "<<SYS>>", "<</SYS>>", "<start_of_turn>", "<end_of_turn>",
                "### Instruction:", "### Response:")


def control_markers(tokenizer) -> tuple[str, ...]:
    """The strings the tokenizer (or its chat template) would read as control: longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for token in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(token, "special", False) or str(token).startswith("<|"):
            found.add(str(token))
    template = getattr(tokenizer, "chat_template", None) or ""
    found.update(m for m in ROLE_MARKERS if isinstance(template, str) and m in template)
    return tuple(sorted((m for m in found if m and m.strip()), key=len, reverse=True))


def neutralise(text: str, markers: Iterable[str]) -> str:
    """Text without any of the markers, also none that removing another would put together."""
    markers = tuple(markers)
    while any(m in text for m in markers):
        for marker in markers:
            text = text.replace(marker, "")
    return text


def neutralise_prompt(prompt: Prompt, markers: Iterable[str]) -> Prompt:
    markers = tuple(markers)
    return Prompt(*(neutralise(field, markers) for field in (prompt.system, prompt.user, prompt.continuation)))


def render_prompt(prompt: Prompt, markers: Iterable[str], is_chat: bool,
                  template: Callable[[list[dict]], str]) -> str:
    """The prompt through a chat template (or, for plain models, its continuation), control tokens
    taken out of its fields first. Some templates (Gemma) refuse a system role: it is folded into
    the user turn."""
    prompt = neutralise_prompt(prompt, markers)
    if not is_chat:
        return prompt.continuation
    try:
        return template([{"role": "system", "content": prompt.system}, {"role": "user", "content": prompt.user}])
    except Exception:
        return template([{"role": "user", "content": f"{prompt.system}\n\n{prompt.user}"}])
