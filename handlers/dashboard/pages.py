"""The dashboard's HTML: plain server-rendered pages, one stylesheet, no script. Every value from the
database or the request passes through `e()` (html.escape) here, so a name like `<script>` is only text."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from html import escape
from typing import Any
from urllib.parse import urlencode

from handlers.dashboard.overview import SHOWN, STATES, Counts, Filters, Row
from handlers.dashboard.timeline import Item
from workflow.model import ROLE_TITLES
from workflow.text import Text

ASSETS = "/dashboard/assets"


def e(value: object) -> str:
    return escape("" if value is None else str(value), quote=True)


@dataclass(frozen=True)
class View:
    """What every page needs: the language, the time zone, and who is signed in (None on the sign-in page)."""

    lang: str
    tz: tzinfo
    user: str = ""  # "name（id）"
    csrf: str = ""

    def t(self, zh: str, en: str) -> str:
        return en if self.lang == "en" else zh

    def txt(self, value: Text | str) -> str:
        return value.get(self.lang) if isinstance(value, Text) else value

    def when(self, at: datetime | None) -> str:
        return at.astimezone(self.tz).strftime("%Y-%m-%d %H:%M") if at else "—"


STATUS = {"open": Text("进行中", "open"), "completed": Text("已完成", "completed"),
          "cancelled": Text("已取消", "cancelled"), "overdue": Text("已逾期", "overdue"), "all": Text("全部", "all")}
OVERDUE = ' class="overdue"'
STEP_STATUS = {"done": Text("已完成", "done"), "active": Text("进行中", "in progress"),
               "locked": Text("未开始", "waiting"), "not_needed": Text("不再需要", "not needed")}


def layout(v: View, title: str, body: str, *, path: str = "/dashboard") -> str:
    other = "en" if v.lang == "zh" else "zh"
    name = "English" if other == "en" else "中文"
    switch = f'<a class="lang" href="{e(path)}?{urlencode({"lang": other})}">{name}</a>'
    who = ""
    if v.user:
        who = (f'<span class="who">{e(v.user)}</span>'
               f'<form method="post" action="/dashboard/signout" class="inline">{csrf_field(v)}'
               f'<button type="submit" class="link">{v.t("退出", "Sign out")}</button></form>')
    return ("<!DOCTYPE html>"
            f'<html lang="{"en" if v.lang == "en" else "zh-CN"}"><head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{e(title)}</title>"
            f'<link rel="stylesheet" href="{ASSETS}/dashboard.css"></head><body>'
            f'<header class="top"><a class="brand" href="/dashboard">{v.t("离职档案 · HR", "Offboarding · HR")}</a>'
            f'<nav>{who}{switch}</nav></header><main>{body}</main></body></html>')


def csrf_field(v: View) -> str:
    return f'<input type="hidden" name="csrf" value="{e(v.csrf)}">'


def notice(v: View, title: str, message: str, *, extra: str = "") -> str:
    return layout(v, title, f'<section class="notice"><h1>{e(title)}</h1><p id="message">{e(message)}</p>'
                            f"{extra}</section>")


# ---------------------------------------------------------------- sign-in

def signin(v: View, options: Sequence[tuple[str, str]], message: str = "") -> str:
    """options: (href, label) per sign-in provider."""
    buttons = "".join(f'<li><a class="button" id="signin-{e(href.rsplit("/", 1)[-1].split("?")[0])}" '
                      f'href="{e(href)}">{e(label)}</a></li>' for href, label in options)
    if not options:
        none = v.t("登录不可用：这里运行的平台都没有提供网页登录。",
                   "Sign-in is unavailable: no platform served here offers web sign-in.")
        buttons = f"<li>{none}</li>"
    msg = f'<p class="flash bad" id="message">{e(message)}</p>' if message else ""
    logged = v.t("仅限人事（HR）使用，每次查看和下载都会记录。", "For HR only; every view and download is logged.")
    body = (f'<section class="notice"><h1>{v.t("HR 登录", "HR sign-in")}</h1>{msg}<p>{logged}</p>'
            f'<ul class="signin">{buttons}</ul></section>')
    return layout(v, v.t("HR 登录", "HR sign-in"), body, path="/dashboard/signin")


# ---------------------------------------------------------------- overview

def _query(f: Filters, **change: str) -> str:
    values = {"state": f.state, "type": f.template, "dept": f.department, "q": f.q} | change
    return "?" + urlencode({k: val for k, val in values.items() if val})


def _options(current: str, choices: Sequence[tuple[str, str]]) -> str:
    return "".join(f'<option value="{e(val)}"{" selected" if val == current else ""}>{e(label)}</option>'
                   for val, label in choices)


def overview(v: View, rows: Sequence[Row], counts: Counts, f: Filters, types: Mapping[str, Text],
             departments: Sequence[str]) -> str:
    tiles = [("open", counts.open, STATUS["open"]), ("overdue", counts.overdue, STATUS["overdue"]),
             ("open", counts.due_soon, Text("24 小时内到期", "due within 24 h")),
             ("completed", counts.completed, STATUS["completed"]), ("cancelled", counts.cancelled, STATUS["cancelled"])]
    ids = ["count-open", "count-overdue", "count-due-soon", "count-completed", "count-cancelled"]
    counts_html = "".join(
        f'<a class="tile{" alert" if i == "count-overdue" and n else ""}" id="{i}" href="{e(_query(f, state=state))}">'
        f'<b>{n}</b><span>{v.txt(label)}</span></a>'
        for i, (state, n, label) in zip(ids, tiles, strict=True))
    form = (
        '<form method="get" action="/dashboard" class="filters">'
        f'<input type="search" name="q" value="{e(f.q)}" '
        f'placeholder="{v.t("姓名、工号或流程号", "name, employee id or case id")}" '
        f'aria-label="{v.t("搜索", "search")}">'
        f'<select name="state" aria-label="{v.t("状态", "state")}">'
        f'{_options(f.state, [(s, v.txt(STATUS[s])) for s in STATES])}</select>'
        f'<select name="type" aria-label="{v.t("类型", "type")}">'
        f'{_options(f.template, [("", v.t("全部类型", "all types")), *[(k, v.txt(t)) for k, t in types.items()]])}'
        "</select>"
        f'<select name="dept" aria-label="{v.t("部门", "department")}">'
        f'{_options(f.department, [("", v.t("全部部门", "all departments")), *[(d, d) for d in departments]])}</select>'
        f'<button type="submit">{v.t("筛选", "Filter")}</button></form>')
    head = [v.t("流程", "Case"), v.t("员工", "Employee"), v.t("部门", "Department"), v.t("类型", "Type"),
            v.t("当前步骤", "Current step"), v.t("等待", "Waiting on"), v.t("自", "Since"), v.t("截止", "Deadline")]
    body_rows = []
    for r in rows[:SHOWN]:
        steps = ("<br>".join(e(f"{w.number}. {v.txt(w.title)}") for w in r.waiting)
                 or e(v.txt(STATUS.get(r.status, Text(r.status, r.status)))))
        waiting = "<br>".join(e(f"{'、'.join(w.people) or '—'}（{v.txt(ROLE_TITLES[w.role])}）") + (
            f' <span class="tag">{v.t("已查看", "viewed")}</span>' if w.viewed else "") for w in r.waiting) or "—"
        flag = f' <span class="tag bad">{v.t("逾期", "overdue")}</span>' if r.overdue else ""
        cells = [f'<a href="/dashboard/case/{e(r.case_id)}">{e(r.case_id)}</a>{flag}',
                 e(f"{r.employee_name}（{r.employee_id}）"), e(r.department or "—"), e(v.txt(r.title)), steps,
                 waiting, e(v.when(r.since)), e(v.when(r.deadline) if r.waiting else v.when(r.closed_at))]
        tds = "".join(f'<td data-label="{e(h)}">{c}</td>' for h, c in zip(head, cells, strict=True))
        body_rows.append(f'<tr class="case{" overdue" if r.overdue else ""}" data-case="{e(r.case_id)}">{tds}</tr>')
    table = (f'<table class="cases" id="cases"><thead><tr>{"".join(f"<th>{e(h)}</th>" for h in head)}</tr></thead>'
             f'<tbody>{"".join(body_rows)}</tbody></table>' if rows else
             f'<p class="empty" id="empty">{v.t("没有符合条件的流程。", "No case matches.")}</p>')
    more = ""
    if len(rows) > SHOWN:
        hidden = len(rows) - SHOWN
        note = v.t(f"另有 {hidden} 个流程未显示，请用筛选或搜索缩小范围。",
                   f"{hidden} more not shown; narrow with the filters.")
        more = f'<p class="hint" id="more">{e(note)}</p>'
    body = (f'<h1>{v.t("离职流程", "Offboarding cases")}</h1><div class="tiles">{counts_html}</div>{form}'
            f'<p class="hint">{v.t("逾期在前，其次按截止时间。", "Overdue first, then by deadline.")}</p>{table}{more}')
    return layout(v, v.t("离职流程", "Offboarding cases"), body)


# ---------------------------------------------------------------- case page

@dataclass(frozen=True)
class CasePage:
    case_id: str
    summary: Sequence[tuple[Text, str | Text]]
    status: str
    steps: Sequence[Mapping[str, Any]]  # number, title, status, who, activated, viewed, done, deadline
    documents: Sequence[Mapping[str, Any]]  # id, title, status, sha256, sealed_at, href
    verify_ok: bool
    verify_lines: Sequence[str]
    items: Sequence[Item]
    accesses: Sequence[Mapping[str, Any]]  # at, actor, action, detail
    names: Mapping[str, str]
    can_fallback: bool
    flash: Mapping[str, Any] | None = None
    truncated: bool = False  # the audit log is longer than the page shows


def _fact_value(v: View, value: str | Text) -> str:
    return e(v.txt(value))


def _item(v: View, it: Item, names: Mapping[str, str]) -> str:
    actor = names.get(it.actor, it.actor) if it.actor else ""
    who = e(f"{actor}（{it.actor}）" if actor and actor != it.actor else (it.actor or v.t("系统", "system")))
    seq = f'<span class="seq">{f"#{it.seq}" if it.seq is not None else v.t("卡片", "card")}</span>'
    facts = "".join(f"<dt>{e(v.txt(k))}</dt><dd>{_fact_value(v, val)}</dd>" for k, val in it.facts)
    raw = ""
    if it.seq is not None:
        raw = (f'<details><summary>{v.t("原始记录", "raw entry")}</summary><pre>'
               f'{e(json.dumps(dict(it.data), ensure_ascii=False, indent=1, sort_keys=True, default=str))}</pre>'
               f'<p class="hash">hash {e(it.hash)}</p></details>')
    link = f'<a href="{e(it.link)}">{v.t("打开", "open")}</a>' if it.link else ""
    step = f' · {e(v.txt(it.step))}' if it.step else ""
    return (f'<li class="entry kind-{e(it.kind)}{" evidence" if it.evidence else ""}" data-kind="{e(it.kind)}">'
            f'<div class="when">{e(v.when(it.at))} {seq}</div>'
            f'<div class="what"><b>{e(v.txt(it.label))}</b>{step} · {who} {link}'
            f'{f"<dl>{facts}</dl>" if facts else ""}{raw}</div></li>')


def case_page(v: View, p: CasePage) -> str:
    flash = ""
    if p.flash:
        flash = (f'<p class="flash {"ok" if p.flash.get("ok") else "bad"}" id="flash">'
                 f'{e(p.flash.get("text", ""))}</p>')
    summary = "".join(f"<dt>{e(v.txt(k))}</dt><dd>{e(v.txt(val))}</dd>" for k, val in p.summary)
    actions = ""
    if p.status == "open":
        def form(action: str, label: str, reason: bool, extra: str = "") -> str:
            field = (f'<input name="reason" required maxlength="500" '
                     f'placeholder="{v.t("原因（必填）", "reason (required)")}" '
                     f'aria-label="{v.t("原因", "reason")}">' if reason else "")
            return (f'<form method="post" action="/dashboard/case/{e(p.case_id)}/{action}" class="action" '
                    f'id="action-{action}">{csrf_field(v)}<input type="hidden" name="nonce" value="{e(_nonce())}">'
                    f'{field}<button type="submit"{extra}>{e(label)}</button></form>')
        actions = (form("remind", v.t("催办（提醒当前办理人）", "Remind whoever it waits on"), False)
                   + (form("fallback", v.t("启动兜底送达", "Start fallback delivery"), True) if p.can_fallback else "")
                   + form("cancel", v.t("取消流程", "Cancel the case"), True, ' class="danger"'))
        actions = f'<section><h2>{v.t("操作", "Actions")}</h2><div class="actions">{actions}</div></section>'
    step_head = [v.t("步骤", "Step"), v.t("状态", "State"), v.t("办理人", "Who"), v.t("开始", "Started"),
                 v.t("查看", "Viewed"), v.t("完成", "Done"), v.t("截止", "Deadline")]
    step_rows = []
    for s in p.steps:
        done = (v.when(s["done"]) + (f" · {s['done_by']}" if s.get("done_by") else "")) if s["done"] else "—"
        cells = [e(f"{s['number']}. {v.txt(s['title'])}") + (
                     f' <a class="upload" href="{e(s["upload"])}">{v.t("上传凭证", "upload evidence")}</a>'
                     if s.get("upload") else ""),
                 e(v.txt(STEP_STATUS.get(s["status"], Text(s["status"], s["status"])))), e(s["who"]),
                 e(v.when(s["activated"])), e(v.when(s["viewed"])), e(done), e(v.when(s["deadline"]))]
        tds = "".join(f'<td data-label="{e(h)}">{c}</td>' for h, c in zip(step_head, cells, strict=True))
        step_rows.append(f"<tr{OVERDUE if s.get('overdue') else ''}>{tds}</tr>")
    rows_html = "".join(step_rows)
    steps = (f'<section><h2>{v.t("步骤", "Steps")}</h2><table class="steps"><thead><tr>'
             f'{"".join(f"<th>{e(h)}</th>" for h in step_head)}</tr></thead><tbody>{rows_html}</tbody></table>'
             "</section>")
    docs = "".join(
        f'<li data-doc="{e(d["id"])}"><b>{e(v.txt(d["title"]))}</b> · {e(d["status"])}'
        + (f' · <a href="{e(d["href"])}" class="doc-download">{v.t("下载", "download")}</a>' if d.get("href") else "")
        + f'<br><span class="hash">SHA-256 {e(d.get("sha256") or "—")}</span></li>' for d in p.documents)
    documents = (f'<section id="documents"><h2>{v.t("文件", "Documents")}</h2>'
                 f'<ul class="docs">{docs or "<li>" + v.t("暂无文件", "none yet") + "</li>"}</ul>'
                 f'<p><a class="button" id="archive" href="/dashboard/case/{e(p.case_id)}/archive.zip">'
                 f'{v.t("下载离职档案（zip，可离线校验）", "Download the case archive (zip, verifiable offline)")}'
                 "</a></p></section>")
    verdict = v.t("通过", "PASS") if p.verify_ok else v.t("未通过", "FAIL")
    verify = (f'<section id="verify"><h2>{v.t("校验结果", "Verify")}: <span class="{"ok" if p.verify_ok else "bad"}" '
              f'id="verify-result">{verdict}</span></h2><details><summary>{v.t("逐项结果", "every check")}</summary>'
              f'<pre>{e(chr(10).join(p.verify_lines))}</pre></details></section>')
    items = "".join(_item(v, it, p.names) for it in p.items)
    cut = ""
    if p.truncated:
        first = v.t("只显示前面的条目；完整记录见离职档案（audit.jsonl）。",
                    "Only the first entries are shown; the archive (audit.jsonl) has them all.")
        cut = f'<p class="hint">{first}</p>'
    timeline = (f'<section id="timeline"><h2>{v.t("时间线", "Timeline")}（{len(p.items)}）</h2>'
                f'<ol class="timeline">{items}</ol>{cut}</section>')
    acc_rows = "".join(
        f'<tr><td>{e(v.when(a["at"]))}</td><td>{e(a["actor"])}</td><td>{e(a["action"])}</td>'
        f'<td>{e(a["detail"])}</td></tr>' for a in p.accesses)
    access = (f'<section id="access"><h2>{v.t("访问记录", "Access log")}</h2><table class="access"><thead><tr>'
              f'<th>{v.t("时间", "When")}</th><th>{v.t("人员", "Who")}</th><th>{v.t("操作", "What")}</th>'
              f'<th>{v.t("详情", "Detail")}</th></tr></thead><tbody>{acc_rows}</tbody></table></section>')
    body = (f'<p><a href="/dashboard">← {v.t("全部流程", "all cases")}</a></p>'
            f'<h1>{v.t("流程", "Case")} {e(p.case_id)}</h1>{flash}<dl class="summary">{summary}</dl>'
            f"{actions}{steps}{documents}{verify}{timeline}{access}")
    return layout(v, f"{p.case_id}", body, path=f"/dashboard/case/{p.case_id}")


def _nonce() -> str:
    # Names this one submission: the chat path's dedup key, so a double tap acts once.
    return secrets.token_urlsafe(18)
