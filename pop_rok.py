"""POP-ROK: 5,378 stereo 16-bit 44.1 kHz WAV loops of pop-rock drumming, with their MIDI drum notes.

The dataset builder for the two Zenodo archives of record 14038284 (CC BY 4.0, WaivOps / Patchbanks), read top
to bottom: what the record publishes, configs, features, the builder, the one-liner. The machinery it stands
on lives in the ``poprok`` package (archives, labels, rows, analysis); the command line, publishing and the
training loader sit on top of it there (``python pop_rok.py --help``).

    builder = PopRok(config_name="default")          # or "labels": no audio, 210 KB download
    builder.download_and_prepare(); ds = builder.as_dataset(split="train")
    stream = PopRok().as_streaming_dataset(split="train")  # never downloads the 12.6 GB archive
"""

from __future__ import annotations

if __name__ == "__main__":  # python pop_rok.py COMMAND: the command line imports this file once, as pop_rok
    from poprok.cli import main

    raise SystemExit(main())

import contextlib
import hashlib
import json
import logging
import os
import posixpath
import tempfile
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError

from poprok.analysis import BANDS
from poprok.archives.checked_tar import CheckedTarGz
from poprok.archives.download import DownloadError, download, zenodo_record_files
from poprok.archives.read_ahead import read_ahead
from poprok.errors import PopRokError, Problems
from poprok.labels.label_set import LabelSet, read_labels
from poprok.labels.names import split_of
from poprok.labels.shapes import OPTIONAL_LABEL_FIELDS
from poprok.labels.survey import Survey
from poprok.progress import datasets_bars_silenced
from poprok.record import ARCHIVES, BARS_PER_LOOP, KEY_MAP, SAMPLE_RATE, ZENODO_RECORD_API
from poprok.rows import LoopReader, archive_errors_as_problems, archive_sources, read_files, source_members, walk_files
from poprok.splits import ALL_SPLITS, FOLD_SPLITS, SPLIT_FOLDS
from poprok.windows import bar_windows, window_features

__all__ = [
    "ALL_SPLITS",
    "ARCHIVES",
    "BARS_PER_LOOP",
    "KEY_MAP",
    "SAMPLE_RATE",
    "PopRok",
    "PopRokConfig",
    "PopRokError",
    "bar_windows",
    "load_pop_rok",
    "make_features",
    "window_features",
]

logger = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------ what the record is

HOMEPAGE = "https://zenodo.org/records/14038284"
LICENSE = "cc-by-4.0"
CITATION = """\
@dataset{waivops_pop_rok_2024,
  author    = {WaivOps and Patchbanks},
  title     = {WaivOps POP-ROK: Open Audio Resources for Machine Learning in Music},
  year      = {2024},
  publisher = {Zenodo},
  doi       = {10.5281/zenodo.14038284},
  url       = {https://doi.org/10.5281/zenodo.14038284}
}
"""
BASE_URL_ENV = "POP_ROK_BASE_URL"  # a mirror of the two archive files
ON_ERROR = ("raise", "skip")
DESCRIPTION = """\
POP-ROK: 5,378 stereo 16-bit 44.1 kHz WAV loops of pop-rock drumming (about 24 hours, 100-130 BPM,
each 8 bars of 4/4), rendered from MIDI by WaivOps / Patchbanks, with the MIDI drum notes each loop
plays and its tempo. Beats and downbeats are derived from the tempo: the loops are grid-quantised
renders that start on the downbeat.
"""

# --------------------------------------------------------------------------------------------- configs


@dataclass
class PopRokConfig(datasets.BuilderConfig):
    """``with_audio`` selects the WAV archive; ``base_url`` names a mirror of the two archive files;
    ``on_error`` says what a bad loop does to the build."""

    with_audio: bool = True
    base_url: str | None = None
    on_error: str = "raise"  # or "skip": leave bad loops out, and report them
    verify: bool = False  # check downloaded archives' size and md5 against the Zenodo record
    record_url: str = ZENODO_RECORD_API
    connections: int = 4  # byte ranges downloaded at once (a busy server caps each connection's speed)

    def __post_init__(self):
        super().__post_init__()
        self.check()

    def check(self) -> None:
        """Clear errors for bad keywords (datasets sets a preset's overrides after __post_init__: builder calls it)."""
        if self.on_error not in ON_ERROR:
            raise PopRokError(f"on_error must be one of {ON_ERROR}, got {self.on_error!r}")
        if not (isinstance(self.connections, int) and self.connections >= 1):
            raise PopRokError(f"connections must be a whole number of at least 1, got {self.connections!r}")

    def create_config_id(self, config_kwargs: dict, custom_features=None) -> str:
        """How the archives are fetched is not what they hold: ``connections`` does not change the cache."""
        return super().create_config_id(
            {k: v for k, v in config_kwargs.items() if k != "connections"}, custom_features
        )


# -------------------------------------------------------------------------------------------- features


def make_features(
    with_audio: bool, instruments: Iterable[str], optional_fields: Iterable[str] = ()
) -> datasets.Features:
    """The columns, in order; optional ones only when some label carries them. ``instruments``: the class names."""
    columns = {}
    if with_audio:
        columns["audio"] = datasets.Audio(sampling_rate=SAMPLE_RATE)
    columns.update(
        name=datasets.Value("string"),
        track=datasets.Value("int32"),
        fold=datasets.Value("int32"),
        bpm=datasets.Value("int32"),
        genre=datasets.Value("string"),
        subgenre=datasets.Value("string"),
        pitch=datasets.List(datasets.Value("int32")),  # the label's list as given: order and repeats kept
        notes=datasets.List(datasets.Value("int32")),
        instruments=datasets.List(datasets.ClassLabel(names=list(dict.fromkeys(instruments)))),
    )
    if with_audio:
        columns.update(
            duration=datasets.Value("float32"),
            num_bars=datasets.Value("int32"),
            beats=datasets.List(datasets.Value("float32")),
            downbeats=datasets.List(datasets.Value("float32")),
            caption=datasets.Value("string"),  # derived from the labels: poprok.captions
            # What listening to the loop found (poprok.analysis): facts of the audio, reported, never problems.
            onsets=datasets.Features({band: datasets.List(datasets.Value("float32")) for band in BANDS}),
            grid_fit=datasets.Value("float32"),
            pattern=datasets.Value("string"),
            peak_dbfs=datasets.Value("float32"),
            loudness_lufs=datasets.Value("float32"),  # null for digital silence (BS.1770 gates it all out)
            clipped_samples=datasets.Value("int32"),
        )
    for name in OPTIONAL_LABEL_FIELDS:
        if name in optional_fields:
            columns[name] = datasets.Value("string")
    if "extra_labels" in optional_fields:
        columns["extra_labels"] = datasets.Value("string")  # JSON of label keys not named above
    return datasets.Features(columns)


# ---------------------------------------------------------------------------------------------- builder


class PopRok(datasets.GeneratorBasedBuilder):
    """POP-ROK drum loops with their MIDI drum notes, tempo and derived beat grid."""

    VERSION = datasets.Version("1.0.0")
    BUILDER_CONFIG_CLASS = PopRokConfig
    BUILDER_CONFIGS = [
        PopRokConfig(
            name="default", version=VERSION, with_audio=True, description="Audio and labels, one row per loop."
        ),
        PopRokConfig(
            name="labels", version=VERSION, with_audio=False, description="Labels only, from the 210 KB label archive."
        ),
    ]
    DEFAULT_CONFIG_NAME = "default"
    _problem_dir: str | None = None  # while preparing: where each generation job leaves its problems
    _labels: LabelSet | None = None  # read by _split_generators, for the survey
    _wav_archive = None  # the WAV archive's reader, when it is one: it says which inflater read it
    _written: dict = {}  # while preparing: split -> (rows, bytes) written by an earlier split's pass
    _declared: list = []  # the splits the labels fill, in SPLIT_FOLDS order (set by _split_generators)
    _file_format = "arrow"

    def __init__(self, *args, **kwargs):
        if os.environ.get(BASE_URL_ENV) and not kwargs.get("base_url"):
            kwargs["base_url"] = os.environ[BASE_URL_ENV]
        kwargs.setdefault("hash", ROWS_CODE_HASH)  # changed code that makes the rows never reuses a stale cache
        config_name = kwargs.get("config_name") or self.DEFAULT_CONFIG_NAME
        preset = next((c for c in self.BUILDER_CONFIGS if c.name == config_name), None)
        if kwargs.get("with_audio", preset.with_audio if preset else True):
            require_audio_stack()  # before the builder touches the cache
            # A row holds a 2.9 MB WAV and 21 other columns, which datasets casts batch by batch: batches of 4
            # take half its time a row (measured: 3.5 against 7 ms), for ~35 MB more at peak than rows one by one.
            kwargs.setdefault("writer_batch_size", 4)
        super().__init__(*args, **kwargs)
        self.config.check()

    def download_and_prepare(self, *args, **kwargs):
        """As datasets' own, but a POP-ROK problem surfaces as itself, not as a DatasetGenerationError."""
        try:
            super().download_and_prepare(*args, **kwargs)
        except DatasetGenerationError as err:
            if isinstance(err.__cause__, PopRokError):
                raise err.__cause__ from None
            raise

    def as_dataset(self, split=None, *args, **kwargs):
        """As datasets' own; a split the archives leave empty is a PopRokError naming the splits that exist."""
        check_split(split, list(self.info.splits or ()))
        return super().as_dataset(split, *args, **kwargs)

    def as_streaming_dataset(self, split=None, *args, **kwargs):
        """As datasets' own; a split the labels leave empty is a PopRokError naming the splits that exist."""
        try:
            return super().as_streaming_dataset(split, *args, **kwargs)
        except (KeyError, ValueError):
            check_split(split, self._declared)
            raise

    def _info(self) -> datasets.DatasetInfo:
        return datasets.DatasetInfo(
            description=DESCRIPTION,
            features=make_features(self.config.with_audio, KEY_MAP.values()),
            homepage=HOMEPAGE,
            license=LICENSE,
            citation=CITATION,
        )

    # ---------------------------------------------------------------------------------------- splits

    def _split_generators(self, dl_manager):
        """The splits the labels fill, by fold (any subset may leave one empty: it is not declared).

        The WAV archive is one stream: its first split's pass fills them all.
        """
        sources = archive_sources(self.config.data_dir, self.config.base_url)
        labels = read_labels(archive_errors_as_problems(self._members(dl_manager, "json", *sources["json"])))
        self._labels = labels
        optional = {column for label in labels.labels.values() for column in label.optional}
        if any(label.extra for label in labels.labels.values()):
            optional.add("extra_labels")
        self.info.features = make_features(self.config.with_audio, labels.instrument_names, optional)
        filled = {split_of(name) for name in labels.labels}
        self._declared = [split for split in SPLIT_FOLDS if split in filled]
        if not self._declared:
            found = f":\n{labels.problems.report()}" if labels.problems else ""
            raise PopRokError(f"the label archive has no usable label, so no split has a loop{found}")
        gen_kwargs = {split: {"labels": labels, "split": split} for split in self._declared}
        if self.config.with_audio:
            wav_source, extracted = sources["wav"]
            if extracted:  # one shard per file, so num_proc can split the work; each split reads only its files
                files = sorted(walk_files(wav_source, ".wav"))
                if not files:
                    raise PopRokError(f"data_dir {wav_source!r} holds neither {ARCHIVES['wav']} nor any WAV file")
                # Every job gets a slice of the files, so labels without a WAV are found here, once.
                reader = LoopReader(labels, ())
                reader.unmatched_labels(Path(path).stem for path in files)
                labels.problems = reader.problems
                for path in files:  # a WAV of an undeclared split has no label: the first split's pass reports it
                    split = split_of(Path(path).stem)
                    gen_kwargs[split if split in gen_kwargs else self._declared[0]].setdefault("wav_files", []).append(
                        path
                    )
                for kwargs in gen_kwargs.values():
                    kwargs.setdefault("wav_files", [])
            else:
                archive = self._wav_archive = self._members(dl_manager, "wav", wav_source, extracted)
                for kwargs in gen_kwargs.values():
                    kwargs["wav_archive"] = archive
        return [datasets.SplitGenerator(name=split, gen_kwargs=kwargs) for split, kwargs in gen_kwargs.items()]

    def _members(self, dl_manager, kind: str, source: str, extracted: bool) -> Iterable[tuple[str, bytes]]:
        """(path, bytes) of the files of an archive (read end to end, checked), or below an extracted folder.

        URLs are downloaded first (resuming, into the datasets cache), except when streaming: then the
        archive is read as it arrives, never extracted nor saved.
        """
        if extracted:
            return source_members(kind, source, extracted)
        published = self._published(ARCHIVES[kind])
        downloaded = None
        if source.startswith(("http://", "https://")) and not dl_manager.is_streaming:
            downloaded = source = self._download(dl_manager, source, published.get("size"))
        # Preparing, reading the WAV archive is the build's one long stage: a bar over its bytes.
        bar = kind == "wav" and not dl_manager.is_streaming
        return source_members(
            kind,
            source,
            extracted,
            dl_manager.download_config,
            expected_size=published.get("size"),
            expected_md5=published.get("md5"),
            discard_path=downloaded,
            progress=bar,
            total=os.path.getsize(source) if bar else None,
        )

    def _published(self, name: str) -> dict:
        """The record's size and md5 of an archive when verifying, else nothing to compare with."""
        if not self.config.verify:
            return {}
        try:
            published = zenodo_record_files(self.config.record_url)
        except DownloadError as err:
            raise PopRokError(f"could not fetch {self.config.record_url} to verify {name}: {err}") from err
        if name not in published:
            raise PopRokError(f"the record {self.config.record_url} publishes no file named {name}")
        return published[name]

    def _download(self, dl_manager, url: str, size: int | None) -> str:
        """Download ``url`` into the datasets cache, resuming a broken transfer (datasets would restart it)."""
        name = Path(url.split("?")[0]).name
        folder = os.path.join(
            dl_manager.download_config.cache_dir, "pop_rok", hashlib.sha256(url.encode()).hexdigest()[:16]
        )
        destination = os.path.join(folder, name)
        if dl_manager.download_config.force_download and os.path.exists(destination):
            os.remove(destination)
        try:
            return str(download(url, destination, expected_size=size, connections=self.config.connections))
        except DownloadError as err:
            raise PopRokError(str(err)) from err

    # ------------------------------------------------------------------------------------ generation

    def _download_and_prepare(self, dl_manager, verification_mode, **prepare_split_kwargs):
        """Prepare, then settle the problems of every generation job (num_proc may run several) at once."""
        self._written = {}
        # From the WAV archive, its reading bar is the progress: datasets' per-split bars would only add three
        # more; from extracted files, datasets' bars count the rows of each split.
        extracted = archive_sources(self.config.data_dir, self.config.base_url)["wav"][1]
        quiet = datasets_bars_silenced() if not (self.config.with_audio and extracted) else contextlib.nullcontext()
        with tempfile.TemporaryDirectory(prefix="pop_rok_problems_") as self._problem_dir, quiet:
            super()._download_and_prepare(dl_manager, verification_mode, **prepare_split_kwargs)
            jobs = [json.loads(path.read_text()) for path in sorted(Path(self._problem_dir).iterdir())]
        self._problem_dir = None
        if isinstance(self._wav_archive, CheckedTarGz) and self._wav_archive.inflater:
            logger.info("inflated %s with %s", self._wav_archive.name, self._wav_archive.inflater)
        survey = self._labels.survey
        for job in jobs:
            survey.merge(job["survey"])
        self._describe(survey)
        empty = [name for name, split in self.info.splits.items() if not split.num_examples]
        if empty:  # every loop of the split was left out (on_error="skip"): a split without rows is not declared
            logger.warning("split(s) %s: every loop left out, so they are not part of the dataset", ", ".join(empty))
            self.info.splits = datasets.SplitDict(
                {name: split for name, split in self.info.splits.items() if name not in empty},
                dataset_name=self.dataset_name,
            )
        rows = sum(split.num_examples for split in self.info.splits.values())
        entries = [tuple(entry) for job in jobs for entry in job["problems"]]
        self._settle(Problems(list(dict.fromkeys(entries))), rows)  # label problems reach every job: once each

    def _prepare_split(self, split_generator, file_format="arrow", num_proc=None, max_shard_size=None):
        """As datasets' own, except for a split that an earlier split's pass over the WAV archive has written."""
        written = self._written.pop(split_generator.name, None)
        if written is None:
            self._file_format = file_format
            return super()._prepare_split(
                split_generator, file_format=file_format, num_proc=num_proc, max_shard_size=max_shard_size
            )
        split_generator.split_info.num_examples, split_generator.split_info.num_bytes = written

    def _generate_examples(self, labels: LabelSet, split: str, wav_archive=None, wav_files=None):
        reader = LoopReader(labels, self.info.features)
        preparing = self._problem_dir is not None
        if not self.config.with_audio:
            rows = reader.label_rows(split)
        elif wav_archive is not None:
            # Preparing, a thread reads ahead: decompressing overlaps writing the cache. Streaming reads on demand.
            rows = reader.audio_rows(read_ahead(wav_archive) if preparing else wav_archive, ARCHIVES["wav"])
        else:  # labels without a WAV were found by _split_generators
            files = read_files(wav_files)
            rows = reader.audio_rows(
                read_ahead(files) if preparing else files, self.config.data_dir, require_wav=False
            )
        # Preparing from the archive, one pass writes every split: this split's rows through datasets, the others'
        # beside it. Streaming a split reads the whole archive and yields that split's rows.
        one_pass = wav_archive is not None and preparing
        count = 0
        with self._other_split_writers(split) if one_pass else contextlib.nullcontext({}) as others:
            for name, row in rows:
                count += 1
                target = FOLD_SPLITS[row["fold"]]
                if target == split:
                    yield name, row
                elif target in others:
                    others[target].write(self.info.features.encode_example(row))
        if wav_archive is not None:
            reader.unmatched_labels(reader.seen)  # the whole archive was read
        if preparing:  # _download_and_prepare settles once every job is done
            job = {"problems": reader.problems.entries, "survey": reader.survey.state()}
            Path(self._problem_dir, f"{uuid.uuid4().hex}.json").write_text(json.dumps(job))
        else:  # streaming: only a pass over the whole archive counted every loop; others counted this split's
            self._settle(reader.problems, count if wav_archive is not None else None)

    @contextlib.contextmanager
    def _other_split_writers(self, split: str):
        """Arrow writers for the declared splits but ``split``, where datasets reads them (a shard each)."""
        from datasets.arrow_writer import ArrowWriter

        if self._file_format != "arrow":
            raise PopRokError(f"POP-ROK is prepared as Arrow (one pass over the WAV archive), not {self._file_format}")
        writers = {
            other: ArrowWriter(
                features=self.info.features,
                path=posixpath.join(self._output_dir, f"{self.dataset_name}-{other}.arrow"),
                writer_batch_size=self._writer_batch_size,
            )
            for other in self._declared
            if other != split
        }
        try:
            yield writers
        finally:
            for other, writer in writers.items():
                self._written[other] = writer.finalize()
                writer.close()

    def _describe(self, survey: Survey) -> None:
        """The first-contact report goes into the dataset's description; its notes, in one line, to stderr."""
        notes = survey.notes()
        logger.info("first contact: %s", "; ".join(notes) if notes else "the archives hold what the reader expects")
        facts = survey.report(self._labels.key_map)["audio_facts"]
        if facts:
            kinds = ", ".join(
                f"{len(facts[kind])} {kind.replace('_', ' ')}"
                for kind in ("clipped", "silent", "off_grid", "unplaced")
            )
            patterns = facts["patterns"]
            logger.info(
                "audio facts: %d exact duplicate group(s), %s, %d pattern group(s) (largest %d)",
                len(facts["duplicates"]), kinds, patterns["count"], patterns["largest"],
            )  # fmt: skip
        self.info.description = f"{DESCRIPTION}\n{survey.text(self._labels.key_map)}\n"

    def _settle(self, problems: Problems, rows: int | None) -> None:
        """Raise with every problem, or (on_error="skip") report what was left out and carry on.

        ``rows``: the loops that remain in the whole dataset, or None when only one split's are known.
        """
        if not problems:
            return
        if self.config.on_error == "skip" and rows == 0:
            raise PopRokError(f"on_error='skip' left out every loop: nothing remains to build.\n{problems.report()}")
        if self.config.on_error == "skip":
            report = f"Left out by on_error='skip' ({len(problems.entries)} problem(s)):\n{problems.report()}"
            logger.warning("%s", report)
            self.info.description += f"\n{report}\n"
            return
        raise PopRokError(
            f"POP-ROK input has {len(problems.entries)} problem(s):\n{problems.report()}\n"
            "What to do: re-download an archive that is damaged; pass on_error='skip' (--on-error skip) to "
            f"leave the listed loops out; report label mismatches upstream ({HOMEPAGE})."
        )


# Every module whose code changes the rows (not the command line, publishing or training on top of them).
ROWS_CODE = (
    "pop_rok.py",
    "poprok/analysis",
    "poprok/archives",
    "poprok/labels",
    "poprok/captions.py",
    "poprok/errors.py",
    "poprok/grid.py",
    "poprok/parallel.py",
    "poprok/record.py",
    "poprok/rows.py",
    "poprok/splits.py",
    "poprok/windows.py",
)


def rows_code_hash() -> str:
    """A digest of the code in ``ROWS_CODE``: the cache id, so a build never reuses rows that older code made."""
    root, digest = Path(__file__).resolve().parent, hashlib.sha256()
    for entry in ROWS_CODE:
        path = root / entry
        for file in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:16]


ROWS_CODE_HASH = rows_code_hash()


def check_split(split, existing: list[str]) -> None:
    """Raise a PopRokError when ``split`` (a name, ``a+b``, ``a[:10%]``) names a split not in ``existing``."""
    if split is None or str(split) == str(datasets.Split.ALL):
        return
    names = [part.split("[")[0].strip() for part in str(split).split("+")]
    missing = [name for name in names if name not in existing]
    if missing:
        raise PopRokError(
            f"split(s) {', '.join(missing)} hold no loop in these archives; the splits that exist: "
            f"{', '.join(existing) or 'none'} (any subset of POP-ROK may leave a split empty)"
        )


def require_audio_stack() -> None:
    """Fail before any work when audio cannot be encoded or decoded (datasets 5 uses torchcodec + FFmpeg)."""
    try:
        from torchcodec.decoders import AudioDecoder  # noqa: F401  (loads FFmpeg's shared libraries)
    except (ImportError, OSError, RuntimeError) as err:
        raise ImportError(
            "POP-ROK's 'default' config stores and decodes audio with torchcodec, which needs torch and "
            "FFmpeg's shared libraries:\n"
            "  pip install torch==2.13.0 torchcodec==0.13.0   (see requirements.txt)\n"
            "  apt-get install ffmpeg                          (or your system's FFmpeg 4-7 package)\n"
            f"The 'labels' config needs neither. ({type(err).__name__}: {err})"
        ) from err


# ------------------------------------------------------------------------------------------- one-liner


def load_pop_rok(split=None, streaming=False, config="default", **builder_kwargs):
    """What ``load_dataset`` returned for loading scripts: prepared (or streamed) POP-ROK.

    ``split`` takes datasets' split arithmetic (``"train+validation"``, ``ALL_SPLITS``); streamed, each
    named split is one pass over the archive, chained.
    """
    builder = PopRok(config_name=config, **builder_kwargs)
    if not streaming:
        builder.download_and_prepare()
        return builder.as_dataset(split=split)
    if split is None or "+" not in str(split):
        return builder.as_streaming_dataset(split=split)
    return datasets.concatenate_datasets(
        [builder.as_streaming_dataset(split=part.strip()) for part in str(split).split("+")]
    )
