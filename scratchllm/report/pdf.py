"""The guide's page layout, and the only module that imports fpdf2.

`Book` gives the chapters (chapters/) what a book chapter needs: a cover, a table of contents, numbered chapters and
sections (which become PDF bookmarks), justified paragraphs with **bold**, *italic* and `code` spans, syntax-coloured
code listings (coloured by listing.py), tables, figures with captions, boxed notes and a stacked block diagram. It
makes every layout decision: chapters pass content and at most a named table style (TABLE_STYLES); column widths,
alignment, type sizes and figure widths are chosen here from the content. Fonts are the DejaVu TrueType files that
ship with matplotlib, embedded as subsets, so every glyph is selectable text. It knows nothing of runs.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace
from PIL import Image

from scratchllm.report.listing import highlight, plain, wrap_runs

FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONTS = {  # family, style -> DejaVu file shipped with matplotlib
    ("serif", ""): "DejaVuSerif.ttf", ("serif", "B"): "DejaVuSerif-Bold.ttf", ("serif", "I"): "DejaVuSerif-Italic.ttf",
    ("sans", ""): "DejaVuSans.ttf", ("sans", "B"): "DejaVuSans-Bold.ttf", ("sans", "I"): "DejaVuSans-Oblique.ttf",
    ("mono", ""): "DejaVuSansMono.ttf", ("mono", "B"): "DejaVuSansMono-Bold.ttf",
}
ACCENT, INK, GREY, RULE = (28, 74, 120), (30, 30, 30), (110, 110, 110), (200, 200, 200)
CODE_BG, NOTE_BG, NOTE_EDGE = (246, 246, 241), (255, 246, 222), (214, 150, 40)
TRAINED = (0, 128, 60)  # the tokens a loss mask trains on
SPAN_STYLES = {"prompt": ("serif", "B", INK), "text": ("serif", "", INK), "trained": ("mono", "B", TRAINED),
               "untrained": ("mono", "", GREY)}  # kind of a piece of text -> font family, style, colour
CODE_COLOURS = {"keyword": (0, 70, 160), "comment": (90, 120, 90), "string": (150, 60, 20), "text": (25, 25, 25)}
BOX_COLOURS = {"embed": (222, 235, 247), "norm": (240, 240, 240), "attn": (253, 224, 200), "mlp": (214, 239, 214),
               "add": (255, 255, 255), "head": (230, 222, 245), "io": (255, 255, 255)}
BODY_PT, CODE_PT, MIN_CODE_PT, LINE = 10, 8.2, 6.2, 1.4
PT = 25.4 / 72  # mm per point
MONO_EM = 1233 / 2048 * PT  # advance of a DejaVu Sans Mono character at 1 pt, in mm
INLINE = re.compile(r"(\*\*[^*]+\*\*|`[^`]+`|\*[^*\s][^*]*\*)")
NUMERIC = re.compile(r"^[-+−]?\d[\d,]*(\.\d+)?(e[-+]\d+)?\s?(%|×|[a-zA-Z/]{1,8})?$")  # 1,234 · 0.5% · 210 MB · 1.05×
NEUTRAL = {"", "–", "·", "-"}  # cells that leave a column numeric
WIDE_ASPECT, SQUARE_FIGURE = 1.4, 0.85  # figures narrower than 1.4 : 1 take 85% of the text width


@dataclass(frozen=True)
class TableStyle:
    """How a kind of table is set: its type size (pt) and whether it spans the text width."""

    size: float
    fill: bool


TABLE_STYLES = {
    "data": TableStyle(8.0, fill=False),  # numbers under short headings: as narrow as the content
    "prose": TableStyle(7.8, fill=True),  # sentences in cells: the full width, long columns wrap
    "matrix": TableStyle(7.4, fill=False),  # a grid of small numbers (attention scores)
    "facts": TableStyle(8.5, fill=True),  # label and value lines about the run
}


def column_widths(natural: list[float], numeric: list[bool], room: float, fill: bool) -> list[float]:
    """Column widths (mm) within `room`. When the natural widths (one line per cell) fit, they are kept, with the
    text columns stretched to the full width if `fill`; when they do not, the widest columns are cut to one
    common width, so short columns stay on one line and only long text wraps.
    Example: natural [20, 10, 90], room 80 -> [20, 10, 50]."""
    total = sum(natural)
    text = sum(w for w, n in zip(natural, numeric, strict=True) if not n)
    if total <= room:
        share = (room - total + text) / text if fill and text else 1.0
        return [w if n else w * share for w, n in zip(natural, numeric, strict=True)]
    left, widest = room, sorted(natural)
    for i, w in enumerate(widest):
        if w * (len(widest) - i) >= left:
            cap = left / (len(widest) - i)
            break
        left -= w
    return [min(w, cap) for w in natural]


@dataclass
class Stage:
    """One box of a stacked diagram: its label, a smaller detail line and a colour kind (BOX_COLOURS)."""

    label: str
    detail: str = ""
    kind: str = "io"


class _Pages(FPDF):
    """FPDF with the running head (book title, chapter) and a page number on every page but the cover."""

    book_title = ""
    running = ""
    plain_next = False  # the next page opens a chapter: no running head

    def header(self):
        if self.page_no() == 1 or self.plain_next:
            self.plain_next = False
            return
        self.set_font("sans", "", 7.5)
        self.set_text_color(*GREY)
        self.set_xy(self.l_margin, 9)
        self.cell(self.epw / 2, 5, self.book_title)
        self.cell(self.epw / 2, 5, self.running, align="R")
        self.set_draw_color(*RULE)
        self.set_line_width(0.2)
        self.line(self.l_margin, 14.5, self.w - self.r_margin, 14.5)
        self.set_xy(self.l_margin, self.t_margin)

    def footer(self):
        if self.page_no() == 1:
            return
        self.set_y(-14)
        self.set_font("sans", "", 8)
        self.set_text_color(*GREY)
        self.cell(0, 5, str(self.page_no()), align="C")


class Book:
    """A book being laid out: call cover(), contents(), then chapter()/section() and the content methods."""

    def __init__(self, title: str, author: str = "scratchllm"):
        self.pdf = pdf = _Pages(orientation="P", unit="mm", format="A4")
        for (family, style), name in FONTS.items():
            pdf.add_font(family, style, str(FONT_DIR / name))
        pdf.book_title = title
        pdf.set_title(title)
        pdf.set_author(author)
        pdf.set_subject("How a GPT is built, told with the code and numbers of one training run")
        pdf.set_keywords("language model, GPT, transformer, BPE, attention, training")
        pdf.set_creator("scratchllm report (fpdf2)")
        pdf.set_lang("en")
        pdf.set_margins(22, 20, 22)
        pdf.set_auto_page_break(True, margin=20)
        pdf.set_text_color(*INK)
        self.chapter_no = 0
        self.figure_no = 0
        self.table_no = 0
        self.fresh_page = False
        self.pending: str | None = None  # a section heading waiting for its first content

    # ------------------------------------------------------------------ structure

    def cover(self, title: str, subtitle: str, facts: list[tuple[str, str]], footnote: str,
              curve: list[tuple[float, float]] = (), curve_label: str = "") -> None:
        """Page 1: the title, a subtitle, a panel of key facts of the run and, given (x, y) points, a small curve."""
        pdf = self.pdf
        pdf.add_page()
        pdf.set_fill_color(*ACCENT)
        pdf.rect(0, 0, pdf.w, 95, style="F")
        pdf.set_text_color(255, 255, 255)
        pdf.set_xy(pdf.l_margin, 38)
        pdf.set_font("sans", "B", 26)
        pdf.multi_cell(pdf.epw, 11, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(3)
        pdf.set_font("serif", "I", 12.5)
        pdf.multi_cell(pdf.epw, 6, subtitle, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*INK)
        pdf.set_y(110)
        self._facts(facts)
        if len(curve) > 1:
            self._sparkline(curve, curve_label, pdf.get_y() + 14, 42)
        pdf.set_y(-45)
        pdf.set_font("serif", "I", 9)
        pdf.set_text_color(*GREY)
        pdf.multi_cell(pdf.epw, 4.5, footnote, align="L")
        pdf.set_text_color(*INK)

    def _facts(self, facts: list[tuple[str, str]]) -> None:
        pdf = self.pdf
        for label, value in facts:
            pdf.set_font("sans", "B", 8)
            pdf.set_text_color(*GREY)
            pdf.cell(48, 7.5, label.upper())
            pdf.set_font("serif", "", 11.5)
            pdf.set_text_color(*INK)
            pdf.multi_cell(pdf.epw - 48, 7.5, value, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_draw_color(*RULE)
            pdf.line(pdf.l_margin, pdf.get_y(), pdf.w - pdf.r_margin, pdf.get_y())

    def _sparkline(self, points: list[tuple[float, float]], label: str, top: float, height: float) -> None:
        """A bare line chart across the text width: the curve, its first and last values, a label."""
        pdf = self.pdf
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        sx = lambda x: pdf.l_margin + 14 + (pdf.epw - 28) * (x - x0) / ((x1 - x0) or 1)  # noqa: E731
        sy = lambda y: top + height - height * (y - y0) / ((y1 - y0) or 1)  # noqa: E731
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.45)
        pdf.polyline([(sx(x), sy(y)) for x, y in points])
        pdf.set_line_width(0.2)
        pdf.set_font("sans", "B", 8)
        pdf.set_text_color(*ACCENT)
        pdf.set_xy(pdf.l_margin, sy(ys[0]) - 2)
        pdf.cell(13, 4, f"{ys[0]:.2f}", align="R")
        pdf.set_xy(pdf.w - pdf.r_margin - 13, sy(ys[-1]) - 2)
        pdf.cell(13, 4, f"{ys[-1]:.2f}")
        pdf.set_font("sans", "I", 8)
        pdf.set_text_color(*GREY)
        pdf.set_xy(pdf.l_margin, top + height + 3)
        pdf.cell(pdf.epw, 4, label, align="C")
        pdf.set_text_color(*INK)

    def contents(self) -> None:
        """A table of contents page, filled in at the end with the chapters' and sections' page numbers."""
        self.pdf.plain_next = True
        self.pdf.add_page()
        self.pdf.plain_next = True
        self.pdf.insert_toc_placeholder(self._render_contents, pages=1, allow_extra_pages=True)
        self.fresh_page = True  # the placeholder has already broken to the next page

    def _render_contents(self, pdf: FPDF, outline: list) -> None:
        pdf.set_xy(pdf.l_margin, 30)
        pdf.set_font("sans", "B", 22)
        pdf.set_text_color(*ACCENT)
        pdf.cell(0, 14, "Contents", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(4)
        for entry in outline:
            top = entry.level == 0
            if top:
                pdf.ln(2.5)
            pdf.set_font("sans" if top else "serif", "B" if top else "", 11 if top else 9.5)
            pdf.set_text_color(*(INK if top else GREY))
            indent = 0 if top else 8
            link = pdf.add_link(page=entry.page_number)
            width = pdf.epw - indent - 12
            pdf.set_x(pdf.l_margin + indent)
            name = entry.name
            while pdf.get_string_width(name + " . . .") > width and len(name) > 4:
                name = name[:-2]
            dots = " ." * int((width - pdf.get_string_width(name) - 2) / pdf.get_string_width(" ."))
            pdf.cell(width, 6.5 if top else 5.5, name + dots, link=link)
            pdf.cell(12, 6.5 if top else 5.5, str(entry.page_number), align="R", link=link,
                     new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_text_color(*INK)

    def chapter(self, title: str) -> None:
        """Start a numbered chapter on a fresh page (a level-0 bookmark and TOC entry)."""
        pdf = self.pdf
        self._flush()
        self.chapter_no += 1
        self.figure_no = self.table_no = 0
        pdf.running = f"{self.chapter_no}  {title}"
        if not self.fresh_page:
            pdf.plain_next = True
            pdf.add_page()
        self.fresh_page = False
        pdf.start_section(f"{self.chapter_no}. {title}", level=0)
        pdf.set_y(30)
        pdf.set_font("sans", "B", 10)
        pdf.set_text_color(*ACCENT)
        pdf.cell(0, 6, f"CHAPTER {self.chapter_no}", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font("sans", "B", 22)
        pdf.set_text_color(*INK)
        pdf.multi_cell(pdf.epw, 10, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.6)
        pdf.line(pdf.l_margin, pdf.get_y() + 2, pdf.l_margin + 30, pdf.get_y() + 2)
        pdf.set_line_width(0.2)
        pdf.ln(8)

    def section(self, title: str) -> None:
        """A level-1 heading (bookmark and TOC entry). It is drawn by the next `need`, together with the content
        that follows it, so a heading never stands alone at the foot of a page."""
        self._flush()
        self.pending = title

    def need(self, height: float) -> None:
        """Start a new page unless `height` mm (plus a pending heading) are left above the bottom margin."""
        pdf, title, self.pending = self.pdf, self.pending, None
        if pdf.get_y() + height + (14 if title else 0) > pdf.page_break_trigger:
            pdf.add_page()
        if title:
            pdf.ln(3)
            pdf.start_section(title, level=1)
            pdf.set_font("sans", "B", 13)
            pdf.set_text_color(*ACCENT)
            pdf.multi_cell(pdf.epw, 7, title, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            pdf.set_text_color(*INK)
            pdf.ln(1.5)

    def _flush(self) -> None:
        if self.pending:
            self.need(0)

    # ------------------------------------------------------------------ text

    def para(self, text: str, markup: bool = True, size: float = BODY_PT, italic: bool = False) -> None:
        """A justified paragraph; with `markup`, **bold**, *italic* and `code` spans are honoured."""
        pdf = self.pdf
        base = ("serif", "I" if italic else "", size)
        pdf.set_font(*base)
        plain = re.sub(r"\*\*|`", "", text) if markup else text
        lines = len(pdf.multi_cell(pdf.epw, 1, plain, dry_run=True, output="LINES"))
        height = lines * size * PT * 1.2 * LINE
        self.need(height if height < 45 else 12)  # a short paragraph is never split across pages
        pieces = INLINE.split(text) if markup else [text]
        with pdf.text_columns(text_align=Align.J, line_height=LINE) as cols, cols.paragraph(bottom_margin=2.2) as p:
            for piece in pieces:
                self._span(p, piece, base, markup)
        pdf.set_font(*base[:2], size)

    def _span(self, paragraph, piece: str, base: tuple, markup: bool) -> None:
        pdf = self.pdf
        if markup and piece.startswith("**") and piece.endswith("**") and len(piece) > 4:
            pdf.set_font(base[0], "B", base[2])
            piece = piece[2:-2]
        elif markup and piece.startswith("`") and piece.endswith("`") and len(piece) > 2:
            pdf.set_font("mono", "", base[2] * 0.88)
            piece = piece[1:-1]
        elif markup and piece.startswith("*") and piece.endswith("*") and len(piece) > 2:
            pdf.set_font(base[0], "I", base[2])
            piece = piece[1:-1]
        else:
            pdf.set_font(*base)
        if piece:
            paragraph.write(piece)

    def bullets(self, items: list[str], intro: str = "") -> None:
        """A bulleted list; items take the same inline markup as `para`. An `intro` paragraph is kept on the same
        page as the start of the list (up to about a third of a page of it)."""
        pdf = self.pdf
        self.need(min(14 + 6 * len(items), 80) if intro else 12)
        if intro:
            self.para(intro)
        base = ("serif", "", BODY_PT)
        with pdf.text_columns(text_align=Align.J, line_height=LINE) as cols:
            for item in items:
                pdf.set_font(*base)
                with cols.paragraph(indent=6, bullet_string="\u2022", bottom_margin=1.2) as p:
                    for piece in INLINE.split(item):
                        self._span(p, piece, base, True)
        pdf.ln(1.5)

    def note(self, text: str, title: str = "Not in this run") -> None:
        """A shaded box with a bold title, for what is missing from the run or worth a warning; `code` spans in
        the text are set in the monospace font."""
        pdf = self.pdf
        pdf.set_font("serif", "", 9.5)
        plain = text.replace("`", "")
        lines = pdf.multi_cell(pdf.epw - 12, 1, plain, dry_run=True, output="LINES")
        height = 9.5 * PT * 1.2 * 1.3 * len(lines) + 12
        self.need(height + 2)
        x, y = pdf.l_margin, pdf.get_y() + 1
        pdf.set_fill_color(*NOTE_BG)
        pdf.rect(x, y, pdf.epw, height, style="F")
        pdf.set_fill_color(*NOTE_EDGE)
        pdf.rect(x, y, 1.4, height, style="F")
        pdf.set_xy(x + 5, y + 3)
        pdf.set_font("sans", "B", 9)
        pdf.set_text_color(*NOTE_EDGE)
        pdf.cell(0, 5, title, new_x=XPos.LEFT, new_y=YPos.NEXT)
        pdf.set_text_color(*INK)
        base = ("serif", "", 9.5)
        with pdf.text_columns(text_align=Align.L, line_height=1.3, l_margin=x + 5, r_margin=pdf.r_margin + 5) as cols:
            with cols.paragraph() as p:
                for piece in re.split(r"(`[^`]+`)", text):
                    self._span(p, piece, base, True)
        pdf.set_xy(pdf.l_margin, y + height + 3)

    def sample(self, prompt: str, text: str, label: str) -> None:
        """A model sample under a small "prompt: label" line: the prompt in bold, the continuation in regular type."""
        continuation = text[len(prompt):] if text.startswith(prompt) else text
        self.spans([(prompt, "prompt"), (continuation, "text")], f"prompt: {label}")

    def spans(self, pieces: list[tuple[str, str]], label: str) -> None:
        """Text made of (text, kind) pieces, each set in its SPAN_STYLES look, line breaks kept, under a small label
        line, a short rule after: a sample (prompt, continuation) or a loss mask (trained, untrained tokens)."""
        pdf = self.pdf
        self.need(24)
        pdf.set_font("sans", "I", 7.5)
        pdf.set_text_color(*GREY)
        pdf.cell(pdf.epw, 4.5, label, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        with pdf.text_columns(text_align=Align.L, line_height=1.3) as cols:
            with cols.paragraph(bottom_margin=2) as p:
                for text, kind in pieces:
                    family, style, colour = SPAN_STYLES[kind]
                    pdf.set_font(family, style, 9.5 if family == "serif" else 8.5)
                    pdf.set_text_color(*colour)
                    p.write(text)
        pdf.set_text_color(*INK)
        pdf.set_draw_color(*RULE)
        pdf.line(pdf.l_margin + pdf.epw / 3, pdf.get_y() + 1, pdf.l_margin + 2 * pdf.epw / 3, pdf.get_y() + 1)
        pdf.ln(5)

    # ------------------------------------------------------------------ code

    def code(self, source: str, caption: str, python: bool = True) -> None:
        """A listing: a caption line above, then the source on a tinted band, Python coloured by token kind.

        The font shrinks (down to MIN_CODE_PT) until the longest line fits; longer lines wrap with a mark. A listing
        that fits on one page is not split across two."""
        pdf = self.pdf
        source = textwrap.dedent(source).rstrip("\n")
        longest = max((len(line) for line in source.splitlines()), default=1)
        room = pdf.epw - 5  # 3 mm before the text, 2 mm after
        size = max(MIN_CODE_PT, min(CODE_PT, room / (longest * MONO_EM)))
        per_line = max(int(room / (size * MONO_EM)), longest if size > MIN_CODE_PT else 1)
        lines = highlight(source) if python else plain(source)
        parts = [part for runs in lines for part in wrap_runs(runs, per_line)]
        height = size * PT * 1.45
        total = height * len(parts) + 9
        self.need(total if total < pdf.page_break_trigger - pdf.t_margin else height * 4 + 8)
        pdf.set_font("sans", "I", 8)
        pdf.set_text_color(*GREY)
        pdf.multi_cell(pdf.epw, 4.5, caption, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_fill_color(*CODE_BG)
        pdf.rect(pdf.l_margin, pdf.get_y(), pdf.epw, 1.5, style="F")
        pdf.set_y(pdf.get_y() + 1.5)
        for part in parts:
            self._code_line(part, size, height)
        pdf.rect(pdf.l_margin, pdf.get_y(), pdf.epw, 1.5, style="F")
        pdf.set_y(pdf.get_y() + 5)
        pdf.set_text_color(*INK)

    def _code_line(self, runs: list[tuple[str, str]], size: float, height: float) -> None:
        pdf = self.pdf
        if pdf.get_y() + height > pdf.page_break_trigger:
            pdf.add_page()
        pdf.set_fill_color(*CODE_BG)
        pdf.rect(pdf.l_margin, pdf.get_y(), pdf.epw, height, style="F")
        pdf.set_x(pdf.l_margin + 3)
        for text, kind in runs:
            pdf.set_font("mono", "B" if kind == "keyword" else "", size)
            pdf.set_text_color(*CODE_COLOURS[kind])
            pdf.cell(pdf.get_string_width(text), height, text)
        pdf.set_xy(pdf.l_margin, pdf.get_y() + height)

    # ------------------------------------------------------------------ tables and figures

    def table(self, header: list[str], rows: list[list[str]], caption: str = "", style: str = "data") -> None:
        """A booktabs-style table (rules above and below the header), optional caption above it. `style` names a
        TABLE_STYLES entry; widths follow the content and numeric columns are right-aligned."""
        pdf, look = self.pdf, TABLE_STYLES[style]
        estimate = (len(rows) + 1) * (look.size * 0.5 + 2.4) + (9 if caption else 0)
        self.need(estimate if estimate < 110 else 40)  # keep short tables on one page
        if caption:
            self.table_no += 1
            self._caption(f"Table {self.chapter_no}.{self.table_no}  {caption}", above=True)
        cells = [[str(c) for c in row] for row in [header, *rows]]
        numeric = [all(NUMERIC.match(c) or c in NEUTRAL for c in col[1:]) for col in zip(*cells, strict=True)]
        widths = column_widths(self._natural_widths(cells, look.size), numeric, pdf.epw, look.fill)
        pdf.set_font("serif", "", look.size)
        pdf.set_fill_color(255, 255, 255)  # unfilled rows take the current fill colour
        heading = FontFace(family="sans", emphasis="BOLD", size_pt=look.size - 0.3, color=ACCENT,
                           fill_color=(236, 241, 247))
        with pdf.table(col_widths=widths, text_align=["RIGHT" if n else "LEFT" for n in numeric],
                       headings_style=heading, line_height=look.size * 0.5, borders_layout="HORIZONTAL_LINES",
                       cell_fill_color=(250, 250, 250), cell_fill_mode="ROWS", width=min(sum(widths), pdf.epw),
                       align="LEFT", padding=(1.0, 1.5)) as t:
            for row_cells in cells:
                row = t.row()
                for cell in row_cells:
                    row.cell(cell)
        pdf.ln(4)

    def _natural_widths(self, cells: list[list[str]], size: float) -> list[float]:
        """Per column, the width (mm) its longest cell needs on one line, padding included. When the columns are
        too wide for the page together, a header may wrap: only its longest word counts."""
        pdf = self.pdf
        pdf.set_font("serif", "", size)
        body = [max((pdf.get_string_width(c) for c in col), default=0.0) for col in zip(*cells[1:], strict=True)]
        body = body or [0.0] * len(cells[0])
        pdf.set_font("sans", "B", size - 0.3)
        heads = [pdf.get_string_width(h) for h in cells[0]]
        if sum(map(max, body, heads)) + 4.0 * len(body) > pdf.epw:
            heads = [max(map(pdf.get_string_width, h.split() or [""])) for h in cells[0]]
        return [max(b, h) + 4.0 for b, h in zip(body, heads, strict=True)]

    def figure(self, path: Path, caption: str) -> None:
        """An image across the text width (a squarish one narrower, any one smaller if the page is too short),
        captioned."""
        pdf = self.pdf
        with Image.open(path) as im:
            px_w, px_h = im.size
        w = pdf.epw * (1.0 if px_w >= WIDE_ASPECT * px_h else SQUARE_FIGURE)
        h = w * px_h / px_w
        most = pdf.page_break_trigger - pdf.t_margin - 14
        if h > most:
            w, h = w * most / h, most
        self.need(h + 12)
        self.figure_no += 1
        pdf.image(str(path), x=pdf.l_margin + (pdf.epw - w) / 2, y=pdf.get_y(), w=w, h=h, alt_text=caption)
        pdf.set_y(pdf.get_y() + h + 1.5)
        self._caption(f"Figure {self.chapter_no}.{self.figure_no}  {caption}")
        pdf.ln(3)

    def _caption(self, text: str, above: bool = False) -> None:
        pdf = self.pdf
        label, _, rest = text.partition("  ")
        pdf.set_text_color(*GREY)
        with pdf.text_columns(text_align=Align.L, line_height=1.3) as cols:
            with cols.paragraph(bottom_margin=1.5 if above else 0) as p:
                pdf.set_font("sans", "B", 8)
                p.write(label + "  ")
                pdf.set_font("sans", "I", 8)
                p.write(rest)
        pdf.set_text_color(*INK)

    # ------------------------------------------------------------------ diagram

    def stack_diagram(self, stages: list[Stage], repeat: tuple[int, int, str], skips: list[tuple[int, int]],
                      caption: str, width: float = 74) -> None:
        """Boxes top to bottom joined by arrows, centred, with the stages repeat[0]..repeat[1] bracketed and
        labelled repeat[2], and residual skips (from the arrow above stage i into the "add" stage j) on the left."""
        pdf = self.pdf
        box_h, gap = 7.0, 4.0
        self.need(len(stages) * (box_h + gap) + 14)
        x0, y = pdf.l_margin + (pdf.epw - width - 40) / 2 + 14, pdf.get_y() + 2
        centre = x0 + width / 2
        tops = []
        for i, stage in enumerate(stages):
            tops.append(y)
            self._stage_box(stage, x0, y, width, box_h)
            if i + 1 < len(stages):
                self._arrow(centre, y + box_h, centre, y + box_h + gap)
            y += box_h + gap
        first, last, label = repeat
        self._bracket(x0 + width + 3, tops[first] - 1.5, tops[last] + box_h + 1.5, label)
        for n, (i, j) in enumerate(skips):
            self._skip(x0, tops[i] - gap / 2, tops[j] + box_h / 2, centre - 3.5, depth=6 + 4 * (n % 2))
        pdf.set_xy(pdf.l_margin, y + 1)
        self.figure_no += 1
        self._caption(f"Figure {self.chapter_no}.{self.figure_no}  {caption}")
        pdf.ln(3)

    def _stage_box(self, stage: Stage, x: float, y: float, w: float, h: float) -> None:
        pdf = self.pdf
        pdf.set_draw_color(90, 90, 90)
        pdf.set_fill_color(*BOX_COLOURS[stage.kind])
        if stage.kind == "add":
            pdf.circle(x + w / 2, y + h / 2, 3.5, style="DF")
            pdf.set_font("sans", "B", 9)
            pdf.set_xy(x + w / 2 - 3.5, y)
            pdf.cell(7, h, "+", align="C")
            pdf.set_font("serif", "I", 7)
            pdf.set_xy(x + w / 2 + 5, y)
            pdf.cell(w / 2 - 5, h, stage.detail)
            return
        pdf.rect(x, y, w, h, style="DF", round_corners=True, corner_radius=1.5)
        pdf.set_xy(x, y + 0.6)
        pdf.set_font("sans", "B", 8)
        pdf.cell(w, 3.3, stage.label, align="C")
        pdf.set_xy(x, y + 3.7)
        pdf.set_font("sans", "", 6.5)
        pdf.set_text_color(*GREY)
        pdf.cell(w, 2.8, stage.detail, align="C")
        pdf.set_text_color(*INK)

    def _arrow(self, x1: float, y1: float, x2: float, y2: float) -> None:
        pdf = self.pdf
        pdf.set_draw_color(70, 70, 70)
        pdf.set_line_width(0.3)
        pdf.line(x1, y1, x2, y2 - 1.2)
        pdf.set_fill_color(70, 70, 70)
        if x1 == x2:
            pdf.polygon([(x2 - 1, y2 - 1.6), (x2 + 1, y2 - 1.6), (x2, y2)], style="F")
        else:
            pdf.polygon([(x2 - 1.6, y2 - 1), (x2 - 1.6, y2 + 1), (x2, y2)], style="F")
        pdf.set_line_width(0.2)

    def _skip(self, x0: float, y_from: float, y_to: float, x_to: float, depth: float) -> None:
        """Residual path: from the main line at y_from, out to the left, down, and back into the add node."""
        pdf = self.pdf
        centre = x_to + 3.5
        left = x0 - depth
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.35)
        pdf.line(centre, y_from, left, y_from)
        pdf.line(left, y_from, left, y_to)
        pdf.line(left, y_to, x_to - 1.5, y_to)
        pdf.set_fill_color(*ACCENT)
        pdf.polygon([(x_to - 1.6, y_to - 1), (x_to - 1.6, y_to + 1), (x_to, y_to)], style="F")
        pdf.set_line_width(0.2)

    def _bracket(self, x: float, top: float, bottom: float, label: str) -> None:
        pdf = self.pdf
        pdf.set_draw_color(*ACCENT)
        pdf.set_line_width(0.4)
        pdf.line(x, top, x + 2, top)
        pdf.line(x + 2, top, x + 2, bottom)
        pdf.line(x, bottom, x + 2, bottom)
        pdf.set_line_width(0.2)
        pdf.set_font("sans", "B", 9)
        pdf.set_text_color(*ACCENT)
        pdf.set_xy(x + 3.5, (top + bottom) / 2 - 3)
        pdf.multi_cell(22, 4, label, align="L")
        pdf.set_text_color(*INK)

    def output(self) -> bytes:
        self._flush()
        return bytes(self.pdf.output())
