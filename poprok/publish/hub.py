"""Publish a Parquet copy folder (``data/{config}/...`` + README.md) to a Hugging Face dataset repo.

One commit: the files' contents are uploaded first (``preupload_lfs_files``, a few at a time), then
``create_commit`` adds them and deletes the pushed configs' other files (their folders are replaced whole);
every other config and file in the repo stays, and the card's YAML keeps the other configs'
``configs``/``dataset_info`` entries. Unchanged files are dropped by the client (their oids match), so
pushing the same data twice makes no commit. The token comes from the caller, ``HF_TOKEN`` or a stored
login, and is never printed.

Progress is one bar over the folder's bytes; ``huggingface_hub``'s own bars (one per file uploaded, and
the download of the current card) are off while this module drives them, and back as they were after.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import disable_progress_bars
from huggingface_hub.utils import tqdm as hub_tqdm

CARD_KEYS_PER_CONFIG = ("configs", "dataset_info")
UPLOAD_THREADS = 5  # as create_commit uploads


def publish_folder(
    folder,
    repo_id: str,
    configs: Iterable[str],
    *,
    private: bool = False,
    revision: str | None = None,
    create_pr: bool = False,
    token: str | None = None,
    commit_message: str | None = None,
):
    """Upload ``folder`` (written for ``configs``) to ``repo_id`` in one commit; returns the CommitInfo.

    ``revision`` is the branch to commit to (created from main if missing); with ``create_pr`` the commit
    opens a pull request against it instead.
    """
    folder, configs = Path(folder), list(configs)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    card_path = folder / "README.md"
    previous = _remote_card(api, repo_id, revision)
    if previous is not None:
        card_path.write_text(str(merge_cards(DatasetCard.load(card_path), previous, configs)), encoding="utf-8")
    additions = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    stale = _stale_files(api, repo_id, revision, configs, {addition.path_in_repo for addition in additions})
    _upload(api, repo_id, additions, revision, create_pr)
    return api.create_commit(
        repo_id,
        operations=[*stale, *additions],
        repo_type="dataset",
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message or f"Publish configs: {', '.join(configs)}",
    )


def _remote_card(api: HfApi, repo_id: str, revision: str | None) -> DatasetCard | None:
    try:
        with disable_progress_bars():  # a download bar for a few KB of YAML says nothing
            path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError):
        return None
    return DatasetCard.load(path)


def _stale_files(
    api: HfApi, repo_id: str, revision: str | None, configs, added: set[str]
) -> list[CommitOperationDelete]:
    """The pushed configs' files in the repo that the new copy does not have (an old shard count's shards)."""
    patterns = [f"data/{config}/*" for config in configs]
    return [
        CommitOperationDelete(path_in_repo=path)
        for path in api.list_repo_files(repo_id, repo_type="dataset", revision=revision)
        if path not in added and any(fnmatch.fnmatch(path, pattern) for pattern in patterns)
    ]


def _upload(api: HfApi, repo_id: str, additions: list[CommitOperationAdd], revision, create_pr: bool) -> None:
    """Each file's content uploaded ahead of the commit, under one bar over the bytes of the files done.

    Files the repo already holds (same oid) and small files the commit carries itself count as done at once.
    """
    total = sum(addition.upload_info.size for addition in additions)
    with (
        hub_tqdm(total=total, desc=f"Uploading to {repo_id}", unit="B", unit_scale=True) as bar,
        disable_progress_bars(),
    ):
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            uploads = {
                pool.submit(
                    api.preupload_lfs_files,
                    repo_id,
                    [addition],
                    repo_type="dataset",
                    revision=revision,
                    create_pr=create_pr,
                ): addition
                for addition in additions
            }
            try:
                for upload in as_completed(uploads):
                    upload.result()
                    bar.update(uploads[upload].upload_info.size)
            except BaseException:
                for upload in uploads:
                    upload.cancel()  # one failure stops the files not yet started
                raise


def merge_cards(new: DatasetCard, previous: DatasetCard, replaced: Iterable[str]) -> DatasetCard:
    """The new card, plus the previous card's per-config YAML entries for configs not being replaced."""
    replaced = set(replaced)
    data, old = new.data.to_dict(), previous.data.to_dict()
    for key in CARD_KEYS_PER_CONFIG:
        kept = [entry for entry in _entries(old.get(key)) if entry.get("config_name", "default") not in replaced]
        if not kept:
            continue  # the new card's entries as they are: a lone config's dataset_info stays a mapping, not a list
        entries = kept + _entries(data.get(key))
        entries.sort(
            key=lambda entry: (entry.get("config_name", "default") != "default", entry.get("config_name", ""))
        )
        data[key] = entries
    return DatasetCard(f"---\n{DatasetCardData(**data).to_yaml()}\n---\n{new.text}")


def _entries(value) -> list[dict]:
    """A card key that holds one config's entry as a dict, or several as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)
