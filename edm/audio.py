"""Decode, resample, write and hash audio files.

Conventions
-----------
- Audio arrays are float32 in [-1, 1]. Decoded audio is mono, shape ``(samples,)``; audio to
  write is ``(samples, channels)`` or ``(samples,)``.
- Sample 0 of a decoded file is the first sample the artist put there: encoder delay (MP3
  LAME/Xing gapless info, the AAC priming samples an MP4 edit list declares) is trimmed, so a
  beat at 1.000 s in the source decodes at 1.000 s from every format.
- Decoding streams block by block (downmix, then resample each block), so memory holds one
  decoded block plus the mono output at the target rate, even for a two-hour DJ mix.

Backends: libsndfile (via ``soundfile``: WAV, FLAC, AIFF, Ogg Vorbis, MP3 through mpg123, which
applies LAME gapless info) and FFmpeg (via PyAV: MP4/M4A/AAC, Opus, and anything libsndfile
cannot open). Writing MP3 goes through PyAV's libmp3lame, because that muxer writes the LAME
tag that tells decoders the encoder delay; ``lameenc`` writes none, and its files decode
25 ms late (1105 samples at 44.1 kHz, measured here).

Examples
--------
>>> import tempfile, numpy as np
>>> tone = np.sin(2 * np.pi * 440 * np.arange(44100) / 44100).astype(np.float32)
>>> with tempfile.TemporaryDirectory() as folder:
...     path = write_audio(f"{folder}/tone.flac", tone, 44100)
...     audio = load_audio(path, 22050)
>>> audio.shape, audio.dtype
((22050,), dtype('float32'))
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: File name extensions edm treats as audio when it scans a folder.
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".opus", ".aif", ".aiff", ".aifc",
     ".m4a", ".mp4", ".aac"}
)

# Formats libsndfile reads natively; everything else goes straight to FFmpeg.
_SOUNDFILE_READ = frozenset({".wav", ".wave", ".flac", ".mp3", ".ogg", ".oga", ".aif", ".aiff",
                             ".aifc"})
# extension → (soundfile format, subtype) for lossless/PCM writing.
_SOUNDFILE_WRITE = {
    ".wav": ("WAV", "PCM_16"),
    ".wave": ("WAV", "PCM_16"),
    ".flac": ("FLAC", "PCM_16"),
    ".aif": ("AIFF", "PCM_16"),
    ".aiff": ("AIFF", "PCM_16"),
    ".ogg": ("OGG", "VORBIS"),
    ".oga": ("OGG", "VORBIS"),
}
# extension → (PyAV container format, codec) for lossy formats FFmpeg encodes well.
_PYAV_WRITE = {
    ".mp3": ("mp3", "libmp3lame"),
    ".m4a": ("ipod", "aac"),
    ".mp4": ("mp4", "aac"),
    ".aac": ("adts", "aac"),
}

#: Encoder delay of AAC-LC (FFmpeg, FDK, Nero); MP4 files declare it, raw ADTS files do not.
_AAC_PRIMING_SAMPLES = 1024
#: Seconds of audio decoded per block when streaming.
BLOCK_S = 10.0
_HASH_CHUNK = 1 << 20


class AudioError(ValueError):
    """A file that cannot be decoded or written; the message names the file and the problem."""


@dataclass(frozen=True)
class AudioInfo:
    """What the container says about a file, before decoding it."""

    path: Path
    sample_rate: int
    channels: int
    duration_s: float
    codec: str


# ---------------------------------------------------------------------------------------------
# Hashing


def content_hash(path: str | Path) -> str:
    """Hex SHA-256 of the file bytes (first 32 hex digits): the track id everywhere in edm.

    Moving or renaming a file keeps its id; re-encoding or re-tagging it makes a new one.
    """
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(_HASH_CHUNK):
                digest.update(chunk)
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror})") from error
    return digest.hexdigest()[:32]


# ---------------------------------------------------------------------------------------------
# Decoding


def _unreadable(path: Path, error: Exception) -> AudioError:
    reason = getattr(error, "strerror", None) or str(error)
    return AudioError(f"{path}: not a readable audio file ({reason})")


def _check_readable(path: Path) -> None:
    try:
        size = path.stat().st_size
    except OSError as error:
        raise AudioError(f"{path}: cannot read ({error.strerror})") from error
    if size == 0:
        raise AudioError(f"{path}: empty file (0 bytes)")


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_stderr_fd: int | None = None


@contextmanager
def quiet_decoder() -> Iterator[None]:
    """Silence what C decoders print on file descriptor 2 while the block runs.

    libsndfile decodes MP3 through libmpg123, which writes "Note: Illegal Audio-MPEG-Header …"
    lines straight to the process's stderr on a damaged or fake file, before edm can report
    the one clean :class:`AudioError` line. Python's ``sys.stderr`` is flushed first; the
    original descriptor is restored when the last nested or concurrent user leaves (wrap only
    the decoder calls themselves: anything else written to fd 2 meanwhile is lost too).
    """
    global _quiet_depth, _saved_stderr_fd
    with _quiet_lock:
        if _quiet_depth == 0:
            try:
                sys.stderr.flush()
                saved = os.dup(2)
            except (OSError, ValueError):  # no fd 2 (a daemon, a closed stream): nothing to do
                saved = None
            if saved is not None:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, 2)
                os.close(devnull)
            _saved_stderr_fd = saved
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved_stderr_fd is not None:
                os.dup2(_saved_stderr_fd, 2)
                os.close(_saved_stderr_fd)
                _saved_stderr_fd = None


def _soundfile_info(path: Path) -> AudioInfo:
    import soundfile

    with quiet_decoder():
        info = soundfile.info(str(path))
    return AudioInfo(path, int(info.samplerate), int(info.channels),
                     float(info.frames) / info.samplerate, info.format.lower())


def _pyav_info(path: Path) -> AudioInfo:
    # Reading imports PyAV only here and in _pyav_blocks: its import costs ~0.2 s, and
    # reading a wav, flac or mp3 never needs it.
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            if stream.duration is not None and stream.time_base is not None:
                duration_s = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration_s = container.duration / 1_000_000  # AV_TIME_BASE is microseconds
            else:
                duration_s = 0.0
            return AudioInfo(path, int(stream.rate), int(stream.channels), duration_s,
                             stream.codec_context.name)
    except av.FFmpegError as error:
        raise _unreadable(path, error) from error


def audio_info(path: str | Path) -> AudioInfo:
    """Sample rate, channels and duration from the file header (duration may be an estimate
    for formats without a sample count, such as MP3 without a Xing header)."""
    import soundfile

    path = Path(path)
    _check_readable(path)
    if path.suffix.lower() in _SOUNDFILE_READ:
        try:
            return _soundfile_info(path)
        except soundfile.LibsndfileError:
            pass  # e.g. a WAV holding a codec libsndfile lacks: FFmpeg gets a go below
    return _pyav_info(path)


def _soundfile_blocks(path: Path, block_frames: int) -> Iterator[tuple[np.ndarray, int]]:
    import soundfile

    with quiet_decoder():
        stream = soundfile.SoundFile(str(path))
    with stream:
        rate = int(stream.samplerate)
        while True:
            with quiet_decoder():
                block = stream.read(block_frames, dtype="float32", always_2d=True)
            if len(block) == 0:
                return
            yield _channel_mean(block), rate


def _channel_mean(block: np.ndarray) -> np.ndarray:
    """Mono mix of a ``(frames, channels)`` block, the same values as ``block.mean(axis=1)``.

    numpy reduces a two-column array along its short axis ~20x slower than it adds columns,
    which made the channel mix half of decoding an mp3.
    """
    mono = block[:, 0].copy()
    for channel in range(1, block.shape[1]):
        mono += block[:, channel]
    if block.shape[1] > 1:
        mono /= np.float32(block.shape[1])
    return mono


def _pyav_blocks(path: Path) -> Iterator[tuple[np.ndarray, int]]:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            stream.thread_type = "AUTO"
            # FFmpeg applies the skip-samples side data (MP3 LAME tag, MP4 edit list) while
            # decoding, so frames already start after the encoder delay. Raw ADTS .aac carries no
            # such data: drop the 1024 priming samples every AAC-LC encoder emits (else +23 ms).
            to_skip = _AAC_PRIMING_SAMPLES if container.format.name == "aac" else 0
            for frame in container.decode(stream):
                samples = frame.to_ndarray()
                if not frame.format.is_planar:
                    samples = samples.reshape(-1, frame.layout.nb_channels).T
                mono = samples.mean(axis=0, dtype=np.float32)
                if frame.format.name.startswith(("s16", "s32", "u8")):
                    mono /= float(np.iinfo(samples.dtype).max) + 1.0
                if to_skip:
                    dropped = min(to_skip, len(mono))
                    mono, to_skip = mono[dropped:], to_skip - dropped
                if len(mono):
                    yield mono, int(frame.sample_rate)
    except av.FFmpegError as error:
        raise _unreadable(path, error) from error


def _decoded_blocks(path: Path, block_frames_hint: int) -> Iterator[tuple[np.ndarray, int]]:
    """Mono float32 blocks at the file's own rate, from whichever backend opens the file."""
    import soundfile

    if path.suffix.lower() in _SOUNDFILE_READ:
        try:
            _soundfile_info(path)
        except soundfile.LibsndfileError:
            pass
        else:
            try:
                yield from _soundfile_blocks(path, block_frames_hint)
            except soundfile.LibsndfileError as error:
                raise AudioError(f"{path}: decoding failed ({error})") from error
            return
    yield from _pyav_blocks(path)


def iter_audio(path: str | Path, sample_rate: int, *,
               block_s: float = BLOCK_S) -> Iterator[np.ndarray]:
    """Stream a file as mono float32 blocks at ``sample_rate`` (encoder delay trimmed).

    Blocks hold about ``block_s`` seconds; concatenated they are exactly :func:`load_audio`.
    """
    import soxr

    path = Path(path)
    _check_readable(path)
    resampler = None
    source_rate = None
    for block, rate in _decoded_blocks(path, int(block_s * 48_000)):
        if source_rate is None:
            source_rate = rate
            if rate != sample_rate:
                resampler = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32")
        elif rate != source_rate:
            raise AudioError(f"{path}: sample rate changes mid-stream ({source_rate} → {rate} Hz)")
        out = block if resampler is None else resampler.resample_chunk(block)
        if len(out):
            yield out
    if source_rate is None:
        raise AudioError(f"{path}: no audio samples decoded (corrupt or not audio)")
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        if len(tail):
            yield tail


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode a whole file to mono float32 at ``sample_rate``, encoder delay trimmed.

    Raises :class:`AudioError` (naming the file) for empty, unreadable or non-audio files.
    Memory: the output array plus one block; the output is preallocated from the header's
    duration and grown only if the header underestimated it.
    """
    path = Path(path)
    info = audio_info(path)
    expected = int(np.ceil(info.duration_s * sample_rate)) + sample_rate // 10
    out = np.empty(max(expected, 1), dtype=np.float32)
    filled = 0
    for block in iter_audio(path, sample_rate):
        if filled + len(block) > len(out):
            grown = np.empty(max(2 * len(out), filled + len(block)), dtype=np.float32)
            grown[:filled] = out[:filled]
            out = grown
        out[filled:filled + len(block)] = block
        filled += len(block)
    if filled == 0:
        raise AudioError(f"{path}: no audio samples decoded (corrupt or not audio)")
    # A slice of the buffer would pin the spare tail; copy only when the waste is large.
    return out[:filled] if len(out) - filled < sample_rate else out[:filled].copy()


# ---------------------------------------------------------------------------------------------
# Writing


def _as_2d(audio: np.ndarray, path: Path) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[:, None]
    if audio.ndim != 2 or audio.shape[1] not in (1, 2):
        raise AudioError(f"{path}: audio must be (samples,) or (samples, 1|2), got {audio.shape}")
    if not np.all(np.isfinite(audio)):
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    return np.clip(audio, -1.0, 1.0)


def _write_pyav(path: Path, audio: np.ndarray, sample_rate: int, container_format: str,
                codec: str, bitrate_kbps: int) -> None:
    import av

    layout = "stereo" if audio.shape[1] == 2 else "mono"
    block = 1 << 16
    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream(codec, rate=sample_rate, layout=layout)
        stream.bit_rate = bitrate_kbps * 1000
        for start in range(0, len(audio), block):
            planar = np.ascontiguousarray(audio[start:start + block].T)
            frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def write_audio(path: str | Path, audio: np.ndarray, sample_rate: int, *,
                bitrate_kbps: int = 256) -> Path:
    """Write ``audio`` (``(samples, channels)`` or ``(samples,)`` float32) to ``path``.

    The format follows the extension: .wav/.flac/.aiff (16-bit PCM), .ogg (Vorbis), .mp3
    (LAME, with the gapless tag), .m4a/.mp4/.aac (AAC). Lossy formats use ``bitrate_kbps``.
    The file appears atomically (temp file + rename), so a reader never sees half of it.
    """
    import av
    import soundfile

    path = Path(path)
    extension = path.suffix.lower()
    if extension not in _SOUNDFILE_WRITE and extension not in _PYAV_WRITE:
        known = ", ".join(sorted({*_SOUNDFILE_WRITE, *_PYAV_WRITE}))
        raise AudioError(f"{path}: cannot write {extension or 'files without extension'} "
                         f"(known: {known})")
    samples = _as_2d(audio, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=extension)
    os.close(handle)
    try:
        if extension in _SOUNDFILE_WRITE:
            file_format, subtype = _SOUNDFILE_WRITE[extension]
            with soundfile.SoundFile(temp_name, "w", sample_rate, samples.shape[1],
                                     subtype=subtype, format=file_format) as stream:
                # Vorbis in libsndfile is happier fed in blocks than in one huge call.
                for start in range(0, len(samples), 1 << 18):
                    stream.write(samples[start:start + (1 << 18)])
        else:
            container_format, codec = _PYAV_WRITE[extension]
            _write_pyav(Path(temp_name), samples, sample_rate, container_format, codec,
                        bitrate_kbps)
        os.replace(temp_name, path)
    except (soundfile.LibsndfileError, av.FFmpegError) as error:
        raise AudioError(f"{path}: cannot write ({error})") from error
    finally:
        Path(temp_name).unlink(missing_ok=True)
    return path
