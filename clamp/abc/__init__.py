"""ABC text: normalization, bar patching, tune splitting and format conversion."""

from clamp.abc.normalize import extract_info_fields, normalize_abc, to_ascii
from clamp.abc.patching import PATCH_MODES, PATCH_SIZE, PatchMode, get_patch_mode, patchify

__all__ = [
    "PATCH_MODES",
    "PATCH_SIZE",
    "PatchMode",
    "extract_info_fields",
    "get_patch_mode",
    "normalize_abc",
    "patchify",
    "to_ascii",
]
