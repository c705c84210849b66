"""Hugging Face <-> scratchllm: every architecture our config builds goes to the HF family that computes exactly
the same function (GPT-2, GPT-NeoX, Llama, Arcee, Qwen3, Apertus), and comes back; anything else is refused by name.

Read in order: families.py (which family, or why none) -> gpt2.py, neox.py, llama.py (config and weight maps) ->
chat_template.py (a finetuned model's turns) -> card.py (README.md) -> folder.py (the export and import folders).
transformers itself is never imported here.
"""

from scratchllm.convert.families import FAMILIES, Family, family_for
from scratchllm.convert.folder import export_hf, import_hf

__all__ = ["FAMILIES", "Family", "export_hf", "family_for", "import_hf"]
