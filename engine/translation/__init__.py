"""The players' language and the model's: providers, markup kept through translation, the glossary."""
from engine.translation.providers import LibreTranslateProvider, LLMProvider, Provider, YandexProvider
from engine.translation.translate import Translation, opening

__all__ = ["LLMProvider", "LibreTranslateProvider", "Provider", "Translation", "YandexProvider", "opening"]
