"""Publishing an exported model folder on the Hugging Face Hub (``av-cli export --push-to-hub REPO``)."""

from __future__ import annotations

from pathlib import Path


def push_to_hub(folder: Path, repo: str, private: bool = False) -> str:
    """Upload ``folder`` to the Hub model repository ``repo`` (created when missing); returns its URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                      commit_message="Upload model exported by av-cli export")
    return f"https://huggingface.co/{repo}"
