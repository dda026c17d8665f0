"""Long-term memory: embeddings, the vector index, hybrid recall and summaries."""
from engine.memory.bank import MemoryBank
from engine.memory.embeddings import Embedder
from engine.memory.recall import Recalled, turn_queries
from engine.memory.summaries import Summaries
from engine.memory.summarize import PipelineSummarizer

__all__ = ["Embedder", "MemoryBank", "PipelineSummarizer", "Recalled", "Summaries", "turn_queries"]
