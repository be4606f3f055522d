"""What Zenodo record 14038284 publishes: its two archives, the loops' audio format and tempo range, the key map.

The facts every part reads; ``pop_rok.py`` shows them up front.
"""

from __future__ import annotations

ARCHIVES = {"wav": "pop_rok_drm_id_001_wav.tar.gz", "json": "pop_rok_drm_id_001_json.tar.gz"}
ZENODO_FILES_URL = "https://zenodo.org/records/14038284/files"
ZENODO_RECORD_API = "https://zenodo.org/api/records/14038284"  # the published file list, sizes and md5s

SAMPLE_RATE = 44100
CHANNELS = 2
BITS_PER_SAMPLE = 16
BARS_PER_LOOP = 8
BPM_RANGE = (100, 130)

# The public repository's pop_rok_drm_id_001_labels.json; a key map inside the label archive overrides it.
KEY_MAP = {
    36: "Kick",
    37: "Rimshot",
    38: "Snare",
    42: "Closed Hat",
    44: "Pedal Hat",
    46: "Open Hat",
    49: "Crash Cymbal",
    51: "Ride Cymbal",
    52: "China Cymbal",
    53: "Ride Bell Cymbal",
    55: "Splash Cymbal",
}
KEY_MAP_FIELD = "key_map_drum_note_labels"
