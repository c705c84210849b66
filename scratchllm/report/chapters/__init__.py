"""The guide's chapters, one module each, in reading order. Each module has a TITLE and `write(book, run)`, which
turns a RunSummary into calls on a Book: it decides what the chapter says and which numbers, listings and figures
back it, never how they look (pdf.py). What a run lacks is said in a note where it would have been shown.
"""

from scratchllm.report.chapters import (
    attention,
    block,
    finetuning,
    glance,
    samples,
    scaling,
    tokenization,
    training,
    troubleshooting,
)

CHAPTERS = (glance, tokenization, attention, block, training, scaling, samples, finetuning, troubleshooting)
CHAPTER_TITLES = tuple(chapter.TITLE for chapter in CHAPTERS)
BOOK_TITLE = glance.BOOK_TITLE
