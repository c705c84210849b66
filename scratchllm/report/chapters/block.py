"""The chapter "The Transformer block": the block explained and drawn as this model's config builds it, its token
embeddings, its parameters part by part, and the block's source.
"""

from __future__ import annotations

from scratchllm.report.collect import RunSummary
from scratchllm.report.pdf import Book, Stage
from scratchllm.report.tables import figure, listing

TITLE = "The Transformer block"


def _stages(m: dict) -> tuple[list[Stage], tuple[int, int, str], list[tuple[int, int]]]:
    C, H, L, V = m.get("n_embd"), m.get("n_head"), m.get("n_layer"), m.get("vocab_size")
    norm = "RMSNorm" if m.get("norm_type") == "rmsnorm" else "LayerNorm"
    act = m.get("activation", "gelu")
    hidden = "8C/3 (gated)" if act == "swiglu" else f"{4 * C}" if isinstance(C, int) else "4C"
    pos = " + position embedding" if m.get("positions", "learned") == "learned" else " (rotary positions in q, k)"
    head = "linear head" + (", tied to the embedding" if m.get("tie_weights", True) else "")
    top = [Stage("token ids", f"up to {m.get('block_size')} positions"), Stage("token embedding" + pos,
                                                                                 f"{V} × {C}", "embed")]
    attn = Stage("causal self-attention", f"{H} heads × {C // H if C and H else '?'} dims, then c_proj", "attn")
    mlp = Stage("MLP", f"{C} → {hidden} → {C}, {act}", "mlp")
    add = Stage("add", "residual", "add")
    tail = [Stage(head, f"{C} → {V} logits", "head"), Stage("softmax", "next-token probabilities")]
    if m.get("norm", "pre") == "pre":
        body = [Stage(norm, "ln_1", "norm"), attn, add, Stage(norm, "ln_2", "norm"), mlp, add]
        return top + body + [Stage(norm, "ln_f (final)", "norm")] + tail, (2, 7, f"× {L}\nblocks"), [(2, 4), (5, 7)]
    body = [attn, add, Stage(norm, "ln_1", "norm"), mlp, add, Stage(norm, "ln_2", "norm")]
    return top + body + tail, (2, 7, f"× {L}\nblocks"), [(2, 3), (5, 6)]


def _param_table(book: Book, run: RunSummary) -> None:
    L = run.model_config.get("n_layer", 1)
    total = run.params_total or 1
    rows = []
    for p in run.params:
        n_all = p.count * L if p.per_block else p.count
        per_block = f"{p.count:,}" if p.per_block else ""
        rows.append([p.name, p.shape, per_block, f"{n_all:,}", f"{100 * n_all / total:.1f}%"])
    rows.append(["total", "", "", f"{run.params_total:,}", "100%"])
    book.table(["part", "tensor shapes", "per block", "in the model", "share"], rows,
               f"Parameters of this model, part by part ({L} blocks).")
    if run.model_config.get("tie_weights", True):
        book.para("The output head shares its matrix with the token embedding (weight tying, as in GPT-2), so it "
                  "adds no parameters: the same vector that represents a token on the way in scores it on the way "
                  "out.")


def write(book: Book, run: RunSummary) -> None:
    book.chapter(TITLE)
    m = run.model_config
    book.para("A GPT is a stack of identical **Transformer blocks** between an embedding table and an output head. "
              "Each position carries a vector of width C, the **residual stream**. A block reads the stream, "
              "computes something, and adds the result back: first **multi-head attention**, where each of H "
              "heads attends with its own C/H-dimensional queries, keys and values and the heads' outputs are "
              "concatenated and projected; then a **feed-forward network** (MLP) that widens each position to 4C, "
              "applies a non-linearity and narrows it again, position by position. A **normalisation** "
              + ("after each residual addition (post-norm, as in the 2017 Transformer)" if m.get("norm") == "post"
                 else "before each branch (pre-norm, as in GPT-2)")
              + " keeps the scale of the numbers steady; the **residual additions** let gradients flow straight "
              "through a deep stack.")
    if not m:
        book.note("No model configuration in config.json or checkpoints/latest/config.json: the diagram and the "
                  "parameter counts of this model cannot be drawn.")
        listing(book, run, "block", "one Transformer block")
        return
    book.section("The block, drawn")
    stages, repeat, skips = _stages(m)
    book.stack_diagram(stages, repeat, skips, f"This model: {m.get('norm', 'pre')}-norm blocks, "
                       f"{m.get('n_layer')} of them; blue lines are the residual connections.")
    figure(book, run, "embeddings_pca", "The token embedding table of this model seen from its two main directions "
           "(PCA): tokens the model treats alike sit close together.")
    book.section("Parameters, part by part")
    if run.params:
        _param_table(book, run)
    book.section("The block, from the source")
    listing(book, run, "block", "one Transformer block")
