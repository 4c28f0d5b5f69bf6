"""The brief (:mod:`responder.brief`) as files offices file upward: Word, PDF, Excel.

Every figure comes from one :class:`responder.brief.Brief` (the same object the
page, the text and the JSON are made from), so the files and the page agree.

* :func:`write_docx` — python-docx; charts as PNG images; the footer carries
  ``第 N 页 / 共 M 页`` as Word fields (PAGE / NUMPAGES), filled in by Word.
* :func:`write_pdf` — ReportLab; text in the shipped Noto Sans CJK SC subset,
  embedded (only the characters used), so the Chinese shows on a machine
  without Chinese fonts; the same chart images, ``第 N 页 / 共 M 页`` on every
  page (drawn after layout).
* :func:`write_xlsx` — openpyxl; one sheet per section, the trend as a table,
  the chart images on a sheet of their own; the print footer numbers pages.
* :func:`chart_images` — the charts, drawn by matplotlib with the Chinese font
  the project ships (``web/static/fonts``: a fresh machine has none).

Each document opens with a title block: 单位 (the jurisdiction's name),
统计周期 and 统计时点 (Asia/Shanghai).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from responder.archive import KIND_LABEL
from responder.brief import (
    CANCELLED,
    LATE,
    ON_TIME,
    OPEN_PAST_DUE,
    PENDING,
    SEVERITIES,
    Brief,
    deadline_text,
    key_events_heading,
    overview_lines,
    shanghai_time,
    timeliness_lines,
)
from responder.clocks import SHANGHAI
from responder.safety import spreadsheet_row
from responder.trends import SPIKE_RULE, spike_text

FORMATS = ("docx", "pdf", "xlsx")
MEDIA_TYPE = {
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FONT_FILE = Path(__file__).resolve().parents[1] / "web" / "static" / "fonts" / "NotoSansCJKsc-subset.ttf"
# Embedded (subset) in every PDF, so its Chinese shows on a machine without Chinese fonts.
PDF_FONT = "YuqingSansSC"
NO_DATA = "无数据"
# The page's colours (web/static/charts.js), so a printed chart reads like the screen's.
KIND_COLORS = ["#1565c0", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41"]


# --------------------------------------------------------------------------- the title block


@functools.lru_cache(maxsize=1)
def _gazetteer() -> Any:
    from classifiers.places import Gazetteer

    return Gazetteer.load()  # read once: every download names its unit


def unit_name(jurisdiction: str, root: str = "") -> str:
    """单位: the jurisdiction's name (``3401`` → 安徽省合肥市); for everything (``""``)
    the deployment's root jurisdiction's name, or 全部辖区."""
    code = jurisdiction or root
    if not code:
        return "全部辖区"
    try:
        g = _gazetteer()
        d = g.get(code)
        return g.describe(d) if d is not None else code
    except Exception:  # the code names it as well; a gazetteer problem must not stop a brief
        return code


def title_block(b: Brief, unit: str) -> list[tuple[str, str]]:
    return [
        ("单位", unit),
        ("统计周期", f"{shanghai_time(b.start)} 至 {shanghai_time(b.end)}（北京时间）"),
        ("统计时点", f"{shanghai_time(b.as_of)}（北京时间）"),
    ]


def file_name(b: Brief, fmt: str) -> str:
    kind = "日报" if b.period == "day" else "周报"
    return f"舆情{kind}_{b.first_day.isoformat()}.{fmt}"


# --------------------------------------------------------------------------- tables (shared by the three)


def overview_table(b: Brief) -> list[list[Any]]:
    o = b.overview
    rows: list[list[Any]] = [["指标", "数值"], ["采集帖文（条）", o.posts]]
    rows += [[f"　其中 {KIND_LABEL.get(c.name, c.name)}", c.count] for c in o.posts_by_kind]
    rows += [
        ["政务舆情帖文（条）", o.relevant_posts],
        ["突发事件相关帖文（条）", o.emergency_posts],
        ["新发事件（起）", o.new_events],
        ["其中突发事件（起）", o.emergency_events],
        ["新建工单（件）", o.tickets_opened],
    ]
    rows += [[f"　{k}", o.tickets_by_severity.get(k, 0)] for k in SEVERITIES]
    rows += [
        ["政务动态自动归档（件）", o.tickets_archived],
        ["属地待定帖文（条）", o.pending_place_posts],
        ["属地待定事件（起）", o.pending_place_events],
    ]
    return rows


def key_events_table(b: Brief) -> list[list[Any]]:
    rows: list[list[Any]] = [["序号", "级别", "事件", "属地", "首发时间", "帖文数（本期）", "工单", "责任部门", "时限节点"]]
    for i, e in enumerate(b.key_events, 1):
        ticket = f"#{e.ticket_id} {e.ticket_status_label}" if e.ticket_id is not None else "无工单"
        rows.append([i, e.severity, e.title, e.place_label, shanghai_time(e.t0), f"{e.post_count}（{e.posts_in_period}）",
                     ticket, e.department, "\n".join(deadline_text(d) for d in e.deadlines) or "无"])
    return rows


def timeliness_table(b: Brief) -> list[list[Any]]:
    t = b.timeliness
    return [["状态", "节点数"], ["本期到期", t.due], [ON_TIME, t.on_time], [LATE, t.late],
            [OPEN_PAST_DUE, t.open_past_deadline], [PENDING, t.pending], [CANCELLED, t.cancelled]]


def counts_table(head: str, items: list[Any], unit: str = "条") -> list[list[Any]]:
    return [[head, f"数量（{unit}）"]] + [[c.name, c.count] for c in items]


def volume_table(b: Brief) -> list[list[Any]]:
    v = b.volume
    if v is None:
        return []
    head = ["时段", *(KIND_LABEL.get(s.name, s.name) for s in v.posts_by_kind), "帖文合计", "新发事件"]
    total = v.posts_total
    fmt = "%Y-%m-%d %H:00" if v.bucket == "hour" else "%Y-%m-%d"
    return [head] + [[t.astimezone(SHANGHAI).strftime(fmt), *(s.data[i] for s in v.posts_by_kind), total[i],
                      v.events[i]] for i, t in enumerate(v.starts)]


# --------------------------------------------------------------------------- charts


@dataclass
class Chart:
    title: str
    png: bytes


class _Plots:
    """Figures without pyplot: no global figure state, so two downloads at once
    (the web serves them from a thread pool) never draw into each other's chart."""

    def __init__(self) -> None:
        import matplotlib
        from matplotlib import font_manager

        if FONT_FILE.exists() and FONT_FILE.name not in {Path(f.fname).name for f in font_manager.fontManager.ttflist}:
            font_manager.fontManager.addfont(str(FONT_FILE))
        if FONT_FILE.exists():
            name = font_manager.FontProperties(fname=str(FONT_FILE)).get_name()
            matplotlib.rcParams["font.family"] = [name, "sans-serif"]
        matplotlib.rcParams["axes.unicode_minus"] = False

    @staticmethod
    def subplots(figsize: tuple[float, float]) -> tuple[Any, Any]:
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=150)
    return buf.getvalue()


def _empty(ax: Any) -> None:
    ax.text(0.5, 0.5, NO_DATA, ha="center", va="center", transform=ax.transAxes, color="#777")
    ax.set_xticks([])
    ax.set_yticks([])


def _bars(plt: _Plots, title: str, labels: list[str], values: list[int], *, horizontal: bool = False,
          color: str = "#1565c0") -> Chart:
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots((7, 3.2 if not horizontal else max(2.4, 0.35 * len(labels) + 1)))
    ax.set_title(title)
    (ax.xaxis if horizontal else ax.yaxis).set_major_locator(MaxNLocator(integer=True))
    if not any(values):
        _empty(ax)
    elif horizontal:
        ax.barh(labels[::-1], values[::-1], color=color)
        for y, val in enumerate(values[::-1]):
            ax.text(val, y, f" {val}", va="center")
    else:
        ax.bar(labels, values, color=color)
        for x, val in enumerate(values):
            ax.text(x, val, str(val), ha="center", va="bottom")
    return Chart(title, _png(fig))


def volume_title(b: Brief) -> str:
    return f"帖文量（按来源类型）与新发事件（{'每小时' if b.period == 'day' else '每日'}）"


def chart_images(b: Brief) -> list[Chart]:
    """The brief's charts as PNG images, the same as the page draws with ECharts."""
    plt = _Plots()
    out = []
    v = b.volume
    if v is not None:
        from matplotlib.ticker import MaxNLocator

        fig, ax = plt.subplots((7, 3.6))
        ax.set_title(volume_title(b))
        x = list(range(len(v.starts)))
        bottom = [0] * len(x)
        for i, s in enumerate(v.posts_by_kind):
            ax.bar(x, s.data, bottom=bottom, label=KIND_LABEL.get(s.name, s.name),
                   color=KIND_COLORS[i % len(KIND_COLORS)])
            bottom = [a + c for a, c in zip(bottom, s.data, strict=True)]
        ax.plot(x, v.events, color="#c62828", marker="o", markersize=3, linestyle="--", label="新发事件")
        top = max([*v.posts_total, *v.events, 1])
        ax.set_ylim(0, top * 1.35)  # head room for the spike labels
        for sp in v.spikes:
            ax.annotate(f"突增 {sp.place}", (sp.bucket, v.posts_total[sp.bucket]), xytext=(0, 14),
                        textcoords="offset points", ha="center", color="#b71c1c", fontsize=8,
                        arrowprops={"arrowstyle": "->", "color": "#b71c1c"})
        labels = v.labels
        step = 3 if len(x) > 12 else 1
        ax.set_xticks(x[::step], labels[::step], fontsize=8)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("数量")
        if v.posts_by_kind or any(v.events):
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=7, frameon=False)
        out.append(Chart(volume_title(b), _png(fig)))
    o = b.overview
    out.append(_bars(plt, "新建工单级别分布（件）", list(SEVERITIES), [o.tickets_by_severity.get(k, 0) for k in SEVERITIES],
                     color="#ef6c00"))
    t = b.timeliness
    out.append(_bars(plt, "本期到期时限节点执行情况（个）", [ON_TIME, LATE, OPEN_PAST_DUE, PENDING, CANCELLED],
                     [t.on_time, t.late, t.open_past_deadline, t.pending, t.cancelled], color="#2e7d32"))
    out.append(_bars(plt, "话题分布（政务舆情帖文，条）", [c.name for c in b.distribution.topics],
                     [c.count for c in b.distribution.topics], horizontal=True))
    out.append(_bars(plt, "地区分布（政务舆情帖文，条）", [c.name for c in b.distribution.places],
                     [c.count for c in b.distribution.places], horizontal=True, color="#6a1b9a"))
    return out


def spike_lines(b: Brief) -> list[str]:
    spikes = b.volume.spikes if b.volume is not None else []
    return [f"突增：{spike_text(x)}" for x in spikes] or ["本期无突增。"]


# --------------------------------------------------------------------------- Word


def _docx_field(paragraph: Any, code: str) -> None:
    """A Word field (PAGE, NUMPAGES) Word fills in when it lays the document out."""
    from docx.oxml import OxmlElement
    from docx.oxml.ns import qn

    def el(tag: str, **attrs: str) -> Any:
        e = OxmlElement(tag)
        for k, val in attrs.items():
            e.set(qn(k), val)
        return e

    run = paragraph.add_run()
    run._r.append(el("w:fldChar", **{"w:fldCharType": "begin"}))
    instr = el("w:instrText", **{"xml:space": "preserve"})
    instr.text = f" {code} "
    run._r.append(instr)
    run._r.append(el("w:fldChar", **{"w:fldCharType": "separate"}))
    t = el("w:t")
    t.text = "1"
    run._r.append(t)
    run._r.append(el("w:fldChar", **{"w:fldCharType": "end"}))


def _docx_table(doc: Any, rows: list[list[Any]]) -> None:
    if len(rows) <= 1:
        doc.add_paragraph("无。")
        return
    table = doc.add_table(rows=len(rows), cols=len(rows[0]))
    table.style = "Table Grid"
    for i, row in enumerate(rows):
        for j, val in enumerate(row):
            cell = table.cell(i, j)
            cell.text = str(val)
            if i == 0:
                for r in cell.paragraphs[0].runs:
                    r.bold = True


def write_docx(b: Brief, path: str | Path | io.BytesIO, *, unit: str, charts: list[Chart] | None = None) -> None:
    from docx import Document
    from docx.enum.text import WD_ALIGN_PARAGRAPH
    from docx.oxml.ns import qn
    from docx.shared import Cm, Pt

    doc = Document()
    normal = doc.styles["Normal"]
    normal.font.name = "SimSun"
    normal.font.size = Pt(10.5)
    # East Asian text takes w:eastAsia, not the Latin font name.
    normal.element.get_or_add_rPr().get_or_add_rFonts().set(qn("w:eastAsia"), "宋体")
    for sec in doc.sections:
        sec.left_margin = sec.right_margin = Cm(2.2)
        p = sec.footer.paragraphs[0]
        p.alignment = WD_ALIGN_PARAGRAPH.CENTER
        p.add_run("第 ")
        _docx_field(p, "PAGE")
        p.add_run(" 页 / 共 ")
        _docx_field(p, "NUMPAGES")
        p.add_run(" 页")
    h = doc.add_heading(b.title, level=0)
    h.alignment = WD_ALIGN_PARAGRAPH.CENTER
    _docx_table(doc, [["项目", "内容"], *([k, val] for k, val in title_block(b, unit))])

    doc.add_heading("一、概况", level=1)
    for line in overview_lines(b):
        doc.add_paragraph(line)
    _docx_table(doc, overview_table(b))

    doc.add_heading(key_events_heading(b), level=1)
    if b.key_events:
        _docx_table(doc, key_events_table(b))
    else:
        doc.add_paragraph("本期无重点事件。")

    doc.add_heading("三、时限执行", level=1)
    for line in timeliness_lines(b):
        doc.add_paragraph(line)
    _docx_table(doc, timeliness_table(b))

    doc.add_heading("四、分布", level=1)
    doc.add_paragraph("话题（政务舆情帖文）")
    _docx_table(doc, counts_table("话题", b.distribution.topics))
    doc.add_paragraph("地区（政务舆情帖文）")
    _docx_table(doc, counts_table("地区", b.distribution.places))

    doc.add_heading("五、趋势与图表", level=1)
    for line in spike_lines(b):
        doc.add_paragraph(line)
    doc.add_paragraph(f"突增判定：{SPIKE_RULE}。")
    for c in charts if charts is not None else chart_images(b):
        doc.add_paragraph(c.title)
        doc.add_picture(io.BytesIO(c.png), width=Cm(16))
    doc.add_paragraph("时限自事件首发时间（T0）起算；各项口径见 /api/briefs 返回的 definitions。")
    doc.save(str(path) if isinstance(path, Path) else path)


# --------------------------------------------------------------------------- PDF


def _pdf_styles() -> dict[str, Any]:
    from reportlab.lib.fonts import addMapping
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    if PDF_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(TTFont(PDF_FONT, str(FONT_FILE)))
        for bold in (0, 1):  # one weight: <b> and <i> use it too
            for italic in (0, 1):
                addMapping(PDF_FONT, bold, italic, PDF_FONT)
    base = {"fontName": PDF_FONT, "wordWrap": "CJK"}
    return {
        "title": ParagraphStyle("title", fontSize=18, leading=26, alignment=1, spaceAfter=8, **base),
        "h1": ParagraphStyle("h1", fontSize=13, leading=20, spaceBefore=10, spaceAfter=4, **base),
        "body": ParagraphStyle("body", fontSize=10, leading=15, **base),
        "cell": ParagraphStyle("cell", fontSize=8.5, leading=11, **base),
        "muted": ParagraphStyle("muted", fontSize=8, leading=11, textColor="#666666", **base),
    }


def _numbered_canvas() -> type:
    """A canvas that draws 第 N 页 / 共 M 页 once it knows M (ReportLab lays out pages first)."""
    from reportlab.pdfgen import canvas

    class NumberedCanvas(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

        def showPage(self) -> None:  # noqa: N802 (ReportLab's name)
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self.setFont(PDF_FONT, 9)
                w, _h = self._pagesize
                self.drawCentredString(w / 2, 28, f"第 {self._pageNumber} 页 / 共 {total} 页")
                super().showPage()
            super().save()

    return NumberedCanvas


def _para(text: str, style: Any) -> Any:
    from xml.sax.saxutils import escape

    from reportlab.platypus import Paragraph

    # Paragraph reads a mini-markup: stored text (titles, reasons) is escaped.
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), style)


def _table(rows: list[list[Any]], styles: dict[str, Any], widths: list[float] | None = None) -> Any:
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    data = [[_para(c, styles["cell"]) for c in row] for row in rows]
    t = Table(data, colWidths=widths, repeatRows=1)
    t.setStyle(TableStyle([
        ("GRID", (0, 0), (-1, -1), 0.5, colors.HexColor("#999999")),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eceff1")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ]))
    return t


def write_pdf(b: Brief, path: str | Path | io.BytesIO, *, unit: str, charts: list[Chart] | None = None) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import cm
    from reportlab.lib.utils import ImageReader
    from reportlab.platypus import Image, KeepTogether, SimpleDocTemplate, Spacer

    st = _pdf_styles()
    doc = SimpleDocTemplate(str(path) if isinstance(path, Path) else path, pagesize=A4, leftMargin=2 * cm, rightMargin=2 * cm, topMargin=1.8 * cm,
                            bottomMargin=2 * cm, title=b.title, author=unit)
    width = A4[0] - 4 * cm
    story: list[Any] = [_para(b.title, st["title"]), _table([["项目", "内容"], *map(list, title_block(b, unit))], st,
                                                            [3 * cm, width - 3 * cm]), Spacer(1, 6)]
    story.append(_para("一、概况", st["h1"]))
    story += [_para(x, st["body"]) for x in overview_lines(b)]
    story += [Spacer(1, 4), _table(overview_table(b), st, [8 * cm, 3 * cm])]
    story.append(_para(key_events_heading(b), st["h1"]))
    if b.key_events:
        story.append(_table(key_events_table(b), st, [0.9 * cm, 1.2 * cm, 3.0 * cm, 1.8 * cm, 1.7 * cm, 1.4 * cm,
                                                      1.6 * cm, 1.6 * cm, width - 13.2 * cm]))
    else:
        story.append(_para("本期无重点事件。", st["body"]))
    story.append(_para("三、时限执行", st["h1"]))
    story += [_para(x, st["body"]) for x in timeliness_lines(b)]
    story += [Spacer(1, 4), _table(timeliness_table(b), st, [5 * cm, 3 * cm])]
    story.append(_para("四、分布", st["h1"]))
    story += [_table(counts_table("话题", b.distribution.topics), st, [6 * cm, 3 * cm]), Spacer(1, 6),
              _table(counts_table("地区", b.distribution.places), st, [6 * cm, 3 * cm])]
    story.append(_para("五、趋势与图表", st["h1"]))
    story += [_para(x, st["body"]) for x in spike_lines(b)]
    story.append(_para(f"突增判定：{SPIKE_RULE}。", st["muted"]))
    for c in charts if charts is not None else chart_images(b):
        img = ImageReader(io.BytesIO(c.png))
        iw, ih = img.getSize()
        w = width
        story.append(KeepTogether([Spacer(1, 6), Image(io.BytesIO(c.png), width=w, height=w * ih / iw)]))
    story.append(Spacer(1, 8))
    story.append(_para("时限自事件首发时间（T0）起算；各项口径见 /api/briefs 返回的 definitions。", st["muted"]))
    doc.build(story, canvasmaker=_numbered_canvas())


# --------------------------------------------------------------------------- Excel


def write_xlsx(b: Brief, path: str | Path | io.BytesIO, *, unit: str, charts: list[Chart] | None = None) -> None:
    from openpyxl import Workbook
    from openpyxl.drawing.image import Image as XlImage
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    bold = Font(bold=True)

    def sheet(title: str, blocks: list[list[list[Any]]], *, first: bool = False) -> Any:
        ws = wb.active if first else wb.create_sheet(title)
        ws.title = title
        ws.append([b.title])
        ws["A1"].font = Font(bold=True, size=14)
        for k, val in title_block(b, unit):
            ws.append([k, val])
        for rows in blocks:
            ws.append([])
            for i, row in enumerate(rows):
                # Stored text (titles, names) never runs as a formula.
                ws.append(spreadsheet_row(row))
                if i == 0:
                    for c in ws[ws.max_row]:
                        c.font = bold
        ws.column_dimensions["A"].width = 24
        ws.oddFooter.center.text = "第 &P 页 / 共 &N 页"
        return ws

    sheet("概况", [[[x] for x in overview_lines(b)], overview_table(b)], first=True)
    ke = sheet("重点事件", [key_events_table(b)] if b.key_events else [[["本期无重点事件。"]]])
    for col, w in zip("ABCDEFGHI", (6, 10, 36, 18, 18, 14, 16, 18, 60), strict=True):
        ke.column_dimensions[col].width = w
    for row in ke.iter_rows():
        for c in row:
            c.alignment = Alignment(wrap_text=True, vertical="top")
    t = b.timeliness
    sheet("时限执行", [[[x] for x in timeliness_lines(b)], timeliness_table(b),
                       counts_table("超时部门", t.breach_departments, "个"),
                       [["工单", "节点", "责任部门", "截止时间", "撤销时间", "撤销人", "办结结果", "理由"]]
                       + [[c.ticket_id, c.milestone, c.department, shanghai_time(c.due_at),
                           shanghai_time(c.cancelled_at), c.cancelled_by, c.outcome, c.reason]
                          for c in t.cancellations]])
    sheet("分布", [counts_table("话题", b.distribution.topics), counts_table("地区", b.distribution.places)])
    sheet("趋势", [volume_table(b), [[x] for x in spike_lines(b)] + [[f"突增判定：{SPIKE_RULE}。"]]])
    ws = sheet("图表", [])
    row = ws.max_row + 2
    for c in charts if charts is not None else chart_images(b):
        ws.cell(row=row, column=1, value=c.title).font = bold
        img = XlImage(io.BytesIO(c.png))
        img.width, img.height = img.width * 0.5, img.height * 0.5  # 150 dpi → about screen size
        ws.add_image(img, f"A{row + 1}")
        row += int(img.height / 20) + 3
    wb.save(path)


WRITERS: dict[str, Callable[..., None]] = {"docx": write_docx, "pdf": write_pdf, "xlsx": write_xlsx}


def write(b: Brief, fmt: str, path: str | Path | io.BytesIO, *, unit: str) -> None:
    if fmt not in WRITERS:
        raise ValueError(f"格式只能是 {'、'.join(FORMATS)}，收到 {fmt!r}")
    WRITERS[fmt](b, path, unit=unit)


def to_bytes(b: Brief, fmt: str, *, unit: str) -> bytes:
    buf = io.BytesIO()
    write(b, fmt, buf, unit=unit)
    return buf.getvalue()


__all__ = ["FORMATS", "MEDIA_TYPE", "Chart", "chart_images", "file_name", "title_block", "to_bytes", "unit_name",
           "write", "write_docx", "write_pdf", "write_xlsx"]
