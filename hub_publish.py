"""Publish a Parquet copy folder (``data/{config}/...`` + README.md) to a Hugging Face dataset repo.

One commit through ``huggingface_hub``'s own upload: the configs being pushed replace their folders
(``delete_patterns``), every other config and file in the repo stays, and the card's YAML keeps the
other configs' ``configs``/``dataset_info`` entries. Unchanged files are dropped by the client (their
oids match), so pushing the same data twice makes no commit. The token comes from the caller,
``HF_TOKEN`` or a stored login, and is never printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from huggingface_hub import DatasetCard, DatasetCardData, HfApi
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

CARD_KEYS_PER_CONFIG = ("configs", "dataset_info")


def publish_folder(
    folder,
    repo_id: str,
    configs: Iterable[str],
    *,
    private: bool = False,
    revision: Optional[str] = None,
    create_pr: bool = False,
    token: Optional[str] = None,
    commit_message: Optional[str] = None,
):
    """Upload ``folder`` (written for ``configs``) to ``repo_id``; returns the CommitInfo."""
    folder, configs = Path(folder), list(configs)
    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    if revision and not create_pr:
        api.create_branch(repo_id, repo_type="dataset", branch=revision, exist_ok=True)
    card_path = folder / "README.md"
    previous = _remote_card(api, repo_id, revision)
    if previous is not None:
        card_path.write_text(str(merge_cards(DatasetCard.load(card_path), previous, configs)), encoding="utf-8")
    return api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=folder,
        revision=revision,
        create_pr=create_pr,
        commit_message=commit_message or f"Publish configs: {', '.join(configs)}",
        delete_patterns=[f"data/{config}/*" for config in configs],
    )


def _remote_card(api: HfApi, repo_id: str, revision: Optional[str]) -> Optional[DatasetCard]:
    try:
        path = api.hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision)
    except (EntryNotFoundError, RevisionNotFoundError, RepositoryNotFoundError):
        return None
    return DatasetCard.load(path)


def merge_cards(new: DatasetCard, previous: DatasetCard, replaced: Iterable[str]) -> DatasetCard:
    """The new card, plus the previous card's per-config YAML entries for configs not being replaced."""
    replaced = set(replaced)
    data, old = new.data.to_dict(), previous.data.to_dict()
    for key in CARD_KEYS_PER_CONFIG:
        kept = [entry for entry in _entries(old.get(key)) if entry.get("config_name", "default") not in replaced]
        entries = kept + _entries(data.get(key))
        entries.sort(key=lambda entry: (entry.get("config_name", "default") != "default", entry.get("config_name", "")))
        if entries:
            data[key] = entries
    return DatasetCard(f"---\n{DatasetCardData(**data).to_yaml()}\n---\n{new.text}")


def _entries(value) -> list[dict]:
    """A card key that holds one config's entry as a dict, or several as a list."""
    if value is None:
        return []
    return [value] if isinstance(value, dict) else list(value)
