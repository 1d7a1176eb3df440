"""Shipping a run's model where users live: its Hub model card and `dtm push`.

Public API:
    card_text(run, variant, model_dir) -> str     the card (README.md) as text
    write_model_card(run_dir, variant, model_dir) -> Path
    push_model(run_dir, variant, repo_id, private=False, ...) -> str   (dtmerge.publish.hub)
"""

from dtmerge.publish.card import CARD_FILE, card_text, write_model_card

__all__ = ["CARD_FILE", "card_text", "write_model_card"]
