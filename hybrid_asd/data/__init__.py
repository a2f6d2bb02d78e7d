"""Data layer: file-name parsing, data-root manifests, audio loading (importable without torch)."""

from hybrid_asd.data.audio import audio_info, load_audio
from hybrid_asd.data.clips import Clip, read_clip_list, write_clip_list
from hybrid_asd.data.manifest import Manifest, scan
from hybrid_asd.data.names import NameParseError, parse_clip_path

__all__ = [
    "Clip",
    "Manifest",
    "NameParseError",
    "audio_info",
    "load_audio",
    "parse_clip_path",
    "read_clip_list",
    "scan",
    "write_clip_list",
]
