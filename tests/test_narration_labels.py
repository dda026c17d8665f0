"""The voice detector (engine.table.narration.voice_faults) against narrations labelled by hand
(bench/narration_labels.py): the set is big enough and balanced, and the detector agrees with it."""
from __future__ import annotations

from bench.narration_labels import LABELS
from engine.table.narration import voice_faults


def _said() -> list[tuple[bool, bool]]:
    """(the label, what the detector says) for every labelled narration: off voice is the positive."""
    return [(item.off_voice, bool(voice_faults(item.text, set(item.names)))) for item in LABELS]


def _misjudged() -> list[str]:
    return [f"{'off' if item.off_voice else 'in'} voice ({item.reason}): {item.text!r}"
            for item, (label, said) in zip(LABELS, _said()) if label != said]


def test_the_labelled_set_is_big_enough_and_holds_both_labels():
    assert len(LABELS) >= 40
    assert sum(item.off_voice for item in LABELS) >= 15
    assert sum(not item.off_voice for item in LABELS) >= 15
    assert len({item.text for item in LABELS}) == len(LABELS)  # no narration twice
    assert all(item.text.strip() and item.names and item.reason for item in LABELS)


def test_the_detector_is_precise_on_the_labelled_set():
    said = _said()
    flagged = [label for label, judged in said if judged]
    precision = sum(flagged) / len(flagged)
    assert precision >= 0.9, (precision, _misjudged())


def test_the_detector_finds_the_narrations_labelled_off_voice():
    said = _said()
    off = [judged for label, judged in said if label]
    recall = sum(off) / len(off)
    assert recall >= 0.9, (recall, _misjudged())
