"""Decoding, encoder-delay trimming, resampling, hashing and writing of audio files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edm.audio import AudioError, audio_info, content_hash, iter_audio, load_audio, write_audio

SR = 44100
CLICK_TIMES_S = (0.75, 1.5, 2.25)


def click_track(seconds: float = 3.0, sample_rate: int = SR) -> np.ndarray:
    """Stereo silence with short 3 kHz bursts at CLICK_TIMES_S."""
    audio = np.zeros((int(seconds * sample_rate), 2), dtype=np.float32)
    length = 256
    burst = np.hanning(length) * np.sin(2 * np.pi * 3000 * np.arange(length) / sample_rate)
    for time_s in CLICK_TIMES_S:
        start = int(time_s * sample_rate)
        if start + length > len(audio):
            break
        audio[start:start + length] = 0.8 * burst[:, None]
    return audio


def first_click_s(audio: np.ndarray, sample_rate: int) -> float:
    """Time the envelope peak of the first click (robust to codec smearing of its edge)."""
    envelope = np.abs(audio)
    window = int(0.05 * sample_rate)
    onset = int(np.argmax(envelope > 0.2 * envelope.max()))
    peak = onset + int(np.argmax(envelope[onset:onset + window]))
    return peak / sample_rate


@pytest.mark.parametrize("extension", [".flac", ".mp3", ".ogg", ".aiff", ".m4a", ".aac"])
def test_first_click_lands_within_2ms_of_wav(tmp_path: Path, extension: str) -> None:
    audio = click_track()
    reference = load_audio(write_audio(tmp_path / "click.wav", audio, SR), 22050)
    decoded = load_audio(write_audio(tmp_path / f"click{extension}", audio, SR), 22050)
    expected = first_click_s(reference, 22050)
    assert abs(expected - (CLICK_TIMES_S[0] + 128 / SR)) < 1e-3  # peak of the Hann burst
    assert abs(first_click_s(decoded, 22050) - expected) < 0.002
    # Length matches the source to within one codec frame plus the resampler's rounding.
    assert abs(len(decoded) / 22050 - len(audio) / SR) < 2048 / SR


def test_resampling_keeps_click_time_and_downmixes(tmp_path: Path) -> None:
    audio = click_track()
    audio[:, 1] = 0.0  # one channel silent: the mono downmix halves the amplitude
    path = write_audio(tmp_path / "click.wav", audio, SR)
    for rate in (22050, 24000, 44100, 48000):
        decoded = load_audio(path, rate)
        assert decoded.dtype == np.float32 and decoded.ndim == 1
        assert abs(len(decoded) - 3 * rate) <= 1
        assert abs(first_click_s(decoded, rate) - (0.75 + 128 / SR)) < 0.5e-3
        assert 0.35 < np.abs(decoded).max() < 0.45


def test_streamed_blocks_equal_whole_load(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    audio = (0.2 * rng.standard_normal((SR * 5, 2))).astype(np.float32)
    path = write_audio(tmp_path / "noise.flac", audio, SR)
    blocks = list(iter_audio(path, 22050, block_s=1.0))
    assert len(blocks) >= 5
    np.testing.assert_array_equal(np.concatenate(blocks), load_audio(path, 22050))


def test_info_and_hash(tmp_path: Path) -> None:
    audio = click_track(seconds=2.0)
    path = write_audio(tmp_path / "a.flac", audio, SR)
    info = audio_info(path)
    assert (info.sample_rate, info.channels) == (SR, 2)
    assert info.duration_s == pytest.approx(2.0)
    copy = tmp_path / "renamed.flac"
    copy.write_bytes(path.read_bytes())
    assert content_hash(copy) == content_hash(path)
    assert len(content_hash(path)) == 32
    audio[0, 0] = 0.5
    assert content_hash(write_audio(tmp_path / "b.flac", audio, SR)) != content_hash(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.mp3", b"", "empty file"),
        ("text.mp3", b"this is not audio, just some text\n" * 50, "not a readable audio file"),
        ("garbage.flac", bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8)),
         "not a readable audio file|no audio samples decoded"),
        ("garbage.m4a", b"\x00\x00\x00\x18ftypM4A " + b"\x01" * 3000, "not a readable audio"),
    ],
)
def test_bad_files_raise_one_line_error_naming_file(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(AudioError, match=message) as caught:
        load_audio(path, 22050)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="cannot read"):
        load_audio(tmp_path / "missing.wav", 22050)
    with pytest.raises(AudioError, match=r"cannot write \.xyz"):
        write_audio(tmp_path / "a.xyz", np.zeros(100, np.float32), SR)
    with pytest.raises(AudioError, match="NaN"):
        write_audio(tmp_path / "a.wav", np.full(100, np.nan, np.float32), SR)


def test_decoding_memory_is_the_output_plus_a_few_blocks(tmp_path: Path) -> None:
    """A 3-minute stereo file decodes to 22.05 kHz mono without holding the whole stereo
    signal: peak allocation stays near the 16 MB output, far below the 64 MB that reading the
    file whole as float32 would take (a 2-hour mix scales the same way)."""
    import tracemalloc

    seconds = 180
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal((SR * seconds, 2))).astype(np.float32)
    path = write_audio(tmp_path / "long.flac", audio, SR)
    del audio
    tracemalloc.start()
    try:
        decoded = load_audio(path, 22050)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    output_mb = decoded.nbytes / 1e6
    assert output_mb == pytest.approx(seconds * 22050 * 4 / 1e6, rel=1e-3)
    assert peak / 1e6 < output_mb + 14, f"peak {peak / 1e6:.0f} MB for {output_mb:.0f} MB out"
