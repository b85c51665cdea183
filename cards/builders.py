"""One builder per card purpose. Pure: a `CaseView` in, a `Card` out.

Flow lock is shown, not just enforced: a button that cannot be used yet is present but disabled,
with the reason beside it ("需先签署《离职保证书》"). The engine stays the authority — a forced
click on a disabled button is refused there with the same facts.
"""

from __future__ import annotations

from cards.model import Button, Card, FormField
from cards.view import CaseView
from workflow.documents import document_title
from workflow.messages import NOT_NEEDED, not_needed_reason
from workflow.model import Role, StepKind
from workflow.template import StepTemplate

# What a finished step's outcome reads as on the status line ("已由 王五 于 10:32 批准").
_OUTCOME_VERBS: dict[str, tuple[str, str]] = {
    "approve": ("批准", "approved"), "approved": ("批准", "approved"),
    "reject": ("驳回", "rejected"), "rejected": ("驳回", "rejected"),
    "confirm": ("确认", "confirmed"), "confirmed": ("确认", "confirmed"),
    "acknowledge": ("确认知悉", "acknowledged"), "acknowledged": ("确认知悉", "acknowledged"),
    "submit": ("提交", "submitted"), "submitted": ("提交", "submitted"),
    "complete": ("完成", "completed"), "completed": ("完成", "completed"),
    "signed": ("签署", "signed"), "replaced": ("以替代方式完成", "completed by the fallback"),
}

_CASE_STATUS = {"open": ("进行中", "open"), "completed": ("已完成", "completed"),
                "cancelled": ("已取消", "cancelled")}


def span(view: CaseView, hours: float) -> str:
    """A policy time as the template states it: whole days when it is whole days, else hours."""
    if hours >= 24 and hours % 24 == 0:
        days = int(hours // 24)
        return view.t(f"{days} 天", f"{days} day" + ("s" if days != 1 else ""))
    shown = int(hours) if float(hours).is_integer() else round(hours, 1)
    return view.t(f"{shown} 小时", f"{shown} hour" + ("s" if shown != 1 else ""))


def ask_button(view: CaseView) -> Button | None:
    """Every card the departing employee holds on an open case lets them ask HR (问HR)."""
    if Role.EMPLOYEE not in view.recipient_roles or view.state.status != "open":
        return None
    return Button(label=view.t("问HR", "Ask HR"), action="ask",
                  form=(FormField("question", view.t("你的问题", "Your question")),))


def _verb(view: CaseView, outcome: str | None) -> str:
    zh, en = _OUTCOME_VERBS.get(outcome or "", ("完成", "completed"))
    return view.t(zh, en)


def progress(view: CaseView, step: StepTemplate) -> str:
    return view.t(f"第 {step.number} 步 / 共 {len(view.template)} 步",
                  f"Step {step.number} of {len(view.template)}")


def deadline(view: CaseView, step: StepTemplate) -> str:
    st = view.st(step.id)
    if st.activated_at is None:
        return "—"
    due = step.due_by(st.activated_at)
    late = view.now > due and st.status == "active"
    text = f"{view.local(due)}（{view.t('北京时间', 'China time')}）" if view.language == "zh" else \
        f"{view.local(due)} (China time)"
    return text + (view.t(" · 已逾期", " · overdue") if late else "")


def done_line(view: CaseView, step_id: str) -> str:
    st = view.st(step_id)
    who = view.name(st.done_by)
    when = view.local(st.done_at, "%H:%M") if st.done_at and view.local(st.done_at, "%Y-%m-%d") == \
        view.local(view.now, "%Y-%m-%d") else view.local(st.done_at, "%m-%d %H:%M")
    line = view.t(f"已由 {who} 于 {when} {_verb(view, st.outcome)}",
                  f"{_verb(view, st.outcome).capitalize()} by {who} at {when}")
    step = view.step(step_id)
    chosen = step.option_label(step.outcome_field, st.outcome) if step.outcome_field else None
    if chosen is not None:  # the outcome HR chose ("被退回") is what later steps hinge on
        line += view.t(f"，结果：{chosen.zh}", f"; result: {chosen.en}")
    return line


def not_needed_line(view: CaseView, step_id: str) -> str:
    """A step closed without being done: "不再需要：<why>" (the case completed, a branch not taken)."""
    st = view.st(step_id)
    why = not_needed_reason(view.template.by_id, st.outcome, st.data)
    return view.t(f"{NOT_NEEDED.zh}：{why.zh}", f"{NOT_NEEDED.en.capitalize()}: {why.en}")


def missing_for(view: CaseView, step: StepTemplate) -> list[str]:
    """Why `step` cannot be finished now: unfinished prerequisites and unsigned documents."""
    out: list[str] = []
    for dep in step.depends_on:
        if view.st(dep).status != "done":
            d = view.step(dep)
            out.append(view.t(f"第 {d.number} 步「{d.title.zh}」", f"step {d.number} \"{d.title.en}\""))
    st = view.st(step.id)
    unsigned = [doc for doc in step.documents if doc not in st.documents_signed]
    for doc in unsigned:
        title = document_title(doc)
        who = step.next_signer(st, doc)
        if step.cosigned and who is not None:
            # Signed in turn on one document: say whose signature it waits for.
            out.append(view.t(f"{view.role_title(who)}签署《{title.zh}》",
                              f"the {view.role_title(who)}'s signature on the {title.en}"))
        else:
            out.append(view.t(f"已签署的《{title.zh}》", f"the signed {title.en}"))
    return out


def signed_so_far(view: CaseView, step: StepTemplate) -> list[str]:
    """Who has signed a document several people sign (e.g. "离职员工已签署《工作交接确认单》")."""
    if not step.cosigned:
        return []
    st = view.st(step.id)
    out = []
    for doc in step.documents:
        title = document_title(doc)
        for role in step.signed_roles(st, doc):
            out.append(view.t(f"{view.role_title(role)}已签署《{title.zh}》",
                              f"The {view.role_title(role)} has signed the {title.en}"))
    return out


def items_lines(view: CaseView, step: StepTemplate) -> list[str]:
    """The lines the step's document lists (template items, then those HR added for this case)."""
    return [f"- {i if isinstance(i, str) else i.get(view.language)}" for i in step.items_for(view.st(step.id).data)]


def close_blockers(view: CaseView) -> list[str]:
    out: list[str] = []
    for sid in view.template.required_ids:
        st = view.st(sid)
        if st.status in ("done", "not_needed"):
            continue
        step = view.step(sid)
        docs = [d for d in step.documents if d not in st.documents_signed]
        label = view.t(f"第 {step.number} 步「{step.title.zh}」", f"step {step.number} \"{step.title.en}\"")
        if docs:
            names = "、".join(f"《{document_title(d).zh}》" for d in docs) if view.language == "zh" else \
                ", ".join(document_title(d).en for d in docs)
            label += view.t(f"（缺已签署的{names}）", f" (missing the signed {names})")
        out.append(label)
    return out


def _closed_status(view: CaseView) -> str | None:
    """What an unfinished item of a closed case reads as ("流程已取消"), None while the case is open."""
    if view.state.status == "open":
        return None
    zh, en = _CASE_STATUS.get(view.state.status, (view.state.status, view.state.status))
    return view.t(f"流程{zh}", f"Case {en}")


def _sep(view: CaseView) -> str:
    return "、" if view.language == "zh" else ", "


def _case_fields(view: CaseView) -> list[tuple[str, str]]:
    fields = [
        (view.t("流程", "Case"), f"{view.case_id} · {view.template.title.get(view.language)}"),
        (view.t("员工", "Employee"), view.t(f"{view.employee_name}（{view.employee_id}）",
                                            f"{view.employee_name} ({view.employee_id})")),
    ]
    if view.last_day:
        fields.append((view.t("最后工作日", "Last working day"), view.last_day.isoformat()))
    return fields


def _action_buttons(view: CaseView, step: StepTemplate) -> list[Button]:
    """Buttons for the card's holder: actions if they act on the step, a signing link if they sign."""
    st = view.st(step.id)
    buttons: list[Button] = []
    turn = step.turn(st)
    url = view.sign_urls.get(step.id)
    if turn is not None and turn[1] in view.recipient_roles and url:
        buttons.append(Button(label=view.t("去签署", "Sign now"), url=url, style="primary"))
    prepare = prepare_button(view, step)
    if prepare is not None:
        buttons.append(prepare)
    notice = view.notice_links.get(step.id)
    if notice is not None:
        buttons.append(Button(label=view.t(f"下载《{notice[0]}》", f"Download: {notice[0]}"), url=notice[1]))
    upload = view.upload_urls.get(step.id)
    if upload is not None:
        buttons.append(Button(label=view.t("上传凭证并填写", "Upload the evidence"), url=upload, style="primary"))
    if step.role not in view.recipient_roles or step.kind == StepKind.SIGN:
        return buttons  # a sign step completes by itself once every document is signed
    blockers = missing_for(view, step)
    reason = (view.t("需先完成：", "Waiting for: ") + _sep(view).join(blockers)) if blockers else None
    # A file is uploaded on its page (the link above), never typed into a card.
    form = tuple(FormField(f.key, f.label.get(view.language), required=f.required,
                           multiline=f.type == "textarea",
                           options=tuple((v, label.get(view.language)) for v, label in f.options))
                 for f in step.fields if f.type != "file")

    def act(label_zh: str, label_en: str, action: str, *, style: str = "primary",
            fields: tuple[FormField, ...] = form) -> Button:
        return Button(label=view.t(label_zh, label_en), action=action, style=style,  # type: ignore[arg-type]
                      enabled=reason is None, reason=reason, form=fields)

    if step.kind == StepKind.APPROVE:
        return [*buttons, act("批准", "Approve", "approve"),
                act("驳回", "Reject", "reject", style="danger",
                    fields=(FormField("reason", view.t("驳回理由", "Reason for rejecting")),))]
    labels = {StepKind.ACKNOWLEDGE: ("我已知悉", "I have read this", "acknowledge"),
              StepKind.CONFIRM: ("确认", "Confirm", "confirm"), StepKind.FORM: ("提交", "Submit", "submit"),
              StepKind.HR_TASK: ("标记完成", "Mark done", "complete")}
    zh, en, action = labels[step.kind]
    return [*buttons, act(zh, en, action)]


def prepare_button(view: CaseView, step: StepTemplate) -> Button | None:
    """HR adds to what the step's document says (e.g. case-specific handover items) until it is signed."""
    if not step.hr_fields or Role.HR not in view.recipient_roles:
        return None
    st = view.st(step.id)
    reason = view.t("文件已开始签署，不能再补充", "Signing has begun; nothing more can be added") \
        if st.documents_signed else None
    form = tuple(FormField(f.key, f.label.get(view.language), required=False, multiline=f.type == "textarea")
                 for f in step.hr_fields)
    return Button(label=view.t("补充交接事项", "Add handover items") if any(f.key == "items" for f in step.hr_fields)
                  else view.t("补充内容", "Add to the document"), action="prepare", enabled=reason is None,
                  reason=reason, form=form)


def step_card(view: CaseView, step_id: str, *, purpose: str = "step") -> Card:
    step = view.step(step_id)
    st = view.st(step_id)
    fields = _case_fields(view)
    fields.append((view.t("办理人", "Who acts"), view.role_title(step.role)))
    if step.documents:
        docs = [document_title(d).get(view.language) for d in step.documents]
        fields.append((view.t("文件", "Documents"), _sep(view).join(docs)))
    fields.append((view.t("截止时间", "Deadline"), deadline(view, step)))
    if view.backpay is not None and shows_backpay(step):
        fields.append((view.t("社保补缴（个人部分）", "Social-insurance back-pay (employee share)"), view.backpay[0]))
    fields.extend(view.settlement_fields)
    if step.role == Role.MANAGER and view.reason:
        # The performance result is what the manager is asked to confirm: keep it on the card itself.
        fields.append((view.t("绩效结果 / 原因", "Performance result / reason"), view.reason))
    body = [f"**{view.t('需要你做什么', 'What is asked')}**", step.ask.get(view.language), "",
            f"**{view.t('为什么', 'Why')}**", step.why.get(view.language)]
    if view.backpay is not None and shows_backpay(step) and view.backpay[1]:
        body += ["", f"**{view.t('计算依据', 'How it was computed')}**", *view.backpay[1]]
    if view.settlement_basis:
        body += ["", f"**{view.t('结算金额计算依据', 'How the settlement was computed')}**", *view.settlement_basis]
    items = items_lines(view, step)
    if items:
        body += ["", f"**{view.t('交接事项', 'Items handed over')}**", *items]
    body += evidence_lines(view, step)
    signed = signed_so_far(view, step)
    if signed:
        body += ["", *signed]
    earlier = _earlier_answers(view, step)
    if earlier:
        body += ["", f"**{view.t('此前记录', 'Earlier in this case')}**", *earlier]
    if st.status == "done":
        status, tone = done_line(view, step_id), "done"
        if st.outcome in ("reject", "rejected") and st.data.get("reason"):
            body += ["", view.t(f"驳回理由：{st.data['reason']}", f"Reason: {st.data['reason']}")]
    elif st.status == "not_needed":
        status, tone = not_needed_line(view, step_id), "closed"
    elif view.state.status != "open":
        status, tone = view.t(f"流程{_CASE_STATUS[view.state.status][0]}", f"Case {view.state.status}"), "closed"
    elif st.status == "locked":
        status, tone = view.t("尚未开始", "Not started yet"), "info"
    elif step.cosigned and view.sign_urls.get(step_id) and (turn := step.turn(st)) is not None:
        # Signed in turn: say it is this holder's turn now (the others' cards name whose it is).
        title_doc = document_title(turn[0])
        status, tone = view.t(f"等待你签署《{title_doc.zh}》", f"Waiting for you to sign the {title_doc.en}"), "action"
    else:
        blockers = missing_for(view, step)
        status = (view.t("等待：", "Waiting for: ") + _sep(view).join(blockers)) if blockers else \
            view.t("等待你操作", "Waiting for you")
        tone = "action"
    buttons = _action_buttons(view, step) if st.status == "active" and view.state.status == "open" else []
    ask = ask_button(view)
    if ask is not None:
        buttons.append(ask)
    title = step.title.get(view.language)
    summary = view.t(f"{view.employee_name} 的离职流程", f"Offboarding of {view.employee_name}")
    if purpose == "reminder" and st.status == "active" and view.state.status == "open":
        title = view.t("提醒：", "Reminder: ") + title
        tone = "warning"
        limit = span(view, step.deadline_hours)
        summary = view.t(f"此步骤已提醒 {st.reminders_sent} 次；本步骤办理时限为开始后 {limit}，请尽快处理",
                         f"Reminder #{st.reminders_sent}: this step is due {limit} after it opened; please act soon")
    return Card(title=title, summary=summary, fields=tuple(fields), body="\n".join(body),
                buttons=tuple(buttons), status=status, tone=tone, progress=progress(view, step),  # type: ignore[arg-type]
                case_id=view.case_id, step_id=step_id, purpose=purpose, language=view.language)


def evidence_lines(view: CaseView, step: StepTemplate) -> list[str]:
    """A fallback step's paper and scans: the notice's text (to hand to the newspaper), why the paper could
    not be produced, and each file uploaded so far (by its hash, as the audit chain records it)."""
    out: list[str] = []
    text = view.notice_text.get(step.id)
    if text:
        out += ["", f"**{view.t('公告文本', 'Notice text')}**", *text]
    problem = view.notice_problems.get(step.id)
    if problem:
        out += ["", view.t(f"⚠ 文件无法生成：{problem}", f"⚠ The document cannot be produced: {problem}")]
    st = view.st(step.id)
    for f in step.file_fields:
        value = st.data.get(f.key)
        if isinstance(value, str) and value.startswith("sha256:"):
            out.append(view.t(f"{f.label.zh}：已上传（SHA-256 {value[7:19]}…）",
                              f"{f.label.en}: uploaded (SHA-256 {value[7:19]}…)"))
        elif st.status == "active":
            out.append(view.t(f"{f.label.zh}：待上传", f"{f.label.en}: not uploaded yet"))
    return out


def shows_backpay(step: StepTemplate) -> bool:
    """The letter that states the amount, and finance's confirmation of paying it."""
    return "guarantee_letter" in step.documents or step.id == "backpay"


def _earlier_answers(view: CaseView, step: StepTemplate) -> list[str]:
    """What prerequisite steps recorded (the employee's application, the performance confirmation)."""
    lines = []
    for dep in step.depends_on:
        st = view.st(dep)
        if st.status != "done":
            continue
        d = view.step(dep)
        colon = view.t("：", ": ")
        lines.append(f"- {d.title.get(view.language)}{colon}{done_line(view, dep)}")
        labels = {f.key: f.label.get(view.language) for f in d.fields}
        for key, value in st.data.items():
            if isinstance(value, (str, int)) and key in labels:
                lines.append(f"  - {labels[key]}{colon}{value}")
    return lines


def alert_card(view: CaseView, step_id: str, *, purpose: str) -> Card:
    step = view.step(step_id)
    st = view.st(step_id)
    fields = [*_case_fields(view), (view.t("卡住的步骤", "Stuck step"),
                                    f"{progress(view, step)} · {step.title.get(view.language)}"),
              (view.t("办理人", "Who acts"), view.role_title(step.role)),
              (view.t("开始于", "Started"), view.local(st.activated_at)),
              (view.t("已提醒", "Reminders sent"), str(st.reminders_sent))]
    # The times are the template's own policy for this step, never a fixed "3 days".
    if purpose == "fallback":
        within = span(view, step.policy.fallback_after_hours)
        title = view.t("需启动备用送达方式", "Start the fallback delivery")
        body = view.t(f"此步骤开始后 {within}内未完成（或已由 HR 启动备用送达）。请先以 EMS 邮寄："
                      "通知书和上传凭证的链接在「邮寄送达」卡片上；邮件被退回或无法投递时，才需登报公告。",
                      f"Not done within {within} of the step opening (or HR started the fallback). Send it by "
                      "registered mail first: the letter and the evidence upload link are on the registered-mail "
                      "card; a newspaper notice only if the mail comes back.")
    else:
        within = span(view, step.policy.alert_after_hours)
        who = view.role_title(step.role)
        title = view.t("流程超时，请跟进", "A case is overdue")
        body = view.t(f"此步骤开始后已超过 {within}仍未完成（办理人：{who}），请电话或当面联系。",
                      f"Not done within {within} of the step opening (waiting for: {who}): please call or visit.")
    return Card(title=title, summary=view.t(f"{view.employee_name} 的离职流程", f"Offboarding of "
                                             f"{view.employee_name}"),
                fields=tuple(fields), body=body, status=done_line(view, step_id) if st.status == "done" else
                _closed_status(view) or view.t("仍在等待", "Still waiting"),
                tone="done" if st.status == "done" else ("closed" if view.state.status != "open" else "warning"),
                progress=progress(view, step), case_id=view.case_id, step_id=step_id, purpose=purpose,
                language=view.language)


def completion_card(view: CaseView) -> Card:
    if view.completion_lines:
        # The opening sentence as it is, each right after it as a list item (they read best as a list
        # on a phone), the issuer's lines at the end.
        head = [f"**{text}**" if kind == "title" else text for kind, text in view.completion_lines[:2]]
        items = [f"- {text}" for kind, text in view.completion_lines[2:] if kind != "closing"]
        closing = [text for kind, text in view.completion_lines if kind == "closing"]
        body = "\n".join([head[0], "", *head[1:], *items, "", *closing])
    else:
        # The notice could not be produced (e.g. directory data missing): say only what holds for every
        # case type, and where to ask.
        body = view.t("**离职手续已全部完成。**\n\n离职证明、档案和社会保险关系转移等事项请向 HR 咨询。",
                      "**Your offboarding is complete.**\n\nAsk HR about the separation certificate and the "
                      "transfer of your file and social insurance.")
    return Card(title=view.t("离职完成 · 权益告知", "Offboarding complete · your rights"),
                summary=view.t(f"{view.employee_name}，感谢你的付出", f"Thank you, {view.employee_name}"),
                fields=tuple(_case_fields(view)), body=body,
                status=view.t(f"完成于 {view.local(view.state.closed_at)}",
                              f"Completed {view.local(view.state.closed_at)}"),
                tone="done", case_id=view.case_id, purpose="completion", language=view.language,
                buttons=tuple(Button(label=view.t(f"下载《{title}》", f"Download: {title}"), url=url)
                              for title, url in view.downloads))


def notice_card(view: CaseView, step_id: str | None, *, purpose: str) -> Card:
    """Cancelled case, or a rejected step sent back to HR."""
    if purpose == "cancelled":
        title = view.t("离职流程已取消", "Offboarding cancelled")
        body = view.t("此流程已由 HR 取消，记录会完整保留。", "HR cancelled this case; its record is kept.")
        if view.cancel_reason:
            body += "\n\n" + view.t(f"原因：{view.cancel_reason}", f"Reason: {view.cancel_reason}")
        status, tone = view.t("已取消", "Cancelled"), "closed"
    elif purpose == "seal_failed":
        step = view.step(step_id) if step_id else None
        title = view.t("签署文件无法盖章", "A signed document could not be sealed")
        if view.state.status == "open":
            body = view.t(f"「{step.title.zh if step else ''}」的签署文件多次加盖电子印章失败，该签名不再有效；"
                          "已向签署人发送新的签署链接，请留意其重新签署。",
                          f"The document signed in \"{step.title.en if step else ''}\" could not be sealed after "
                          "repeated attempts; that signature no longer counts and the signer was sent a new link.")
        else:
            body = view.t(f"「{step.title.zh if step else ''}」的签署文件多次加盖电子印章失败。流程已结束，"
                          "无法自动重新签署，请与签署人联系另行处理。",
                          f"The document signed in \"{step.title.en if step else ''}\" could not be sealed after "
                          "repeated attempts. The case is closed, so it cannot be signed again here; please "
                          "arrange it with the signer.")
        status, tone = view.t("需重新签署", "Signature needed again"), "warning"
    else:
        step = view.step(step_id) if step_id else None
        title = view.t("步骤被驳回", "A step was rejected")
        reason = view.st(step_id).data.get("reason", "") if step_id else ""
        body = view.t(f"「{step.title.zh if step else ''}」被驳回。理由：{reason}",
                      f"\"{step.title.en if step else ''}\" was rejected. Reason: {reason}")
        status, tone = (done_line(view, step_id) if step_id else ""), "warning"
    return Card(title=title, summary=view.t(f"{view.employee_name} 的离职流程", f"Offboarding of "
                                             f"{view.employee_name}"),
                fields=tuple(_case_fields(view)), body=body, status=status, tone=tone,  # type: ignore[arg-type]
                case_id=view.case_id, step_id=step_id, purpose=purpose, language=view.language)


def summary_card(view: CaseView) -> Card:
    """HR's live overview of one case: every step with its state, and the close button (flow lock).
    Where every update costs (`view.progress_url` set), a card that never changes and links to the
    live page instead."""
    if view.progress_url:
        return _summary_compact(view)
    lines = []
    for step in view.template.steps:
        st = view.st(step.id)
        label = f"{step.number}. {step.title.get(view.language)}（{view.role_title(step.role)}）"
        if st.status == "done":
            lines.append(f"- ✓ {label} — {done_line(view, step.id)}")
        elif st.status == "not_needed":
            lines.append(f"- – {label} — {not_needed_line(view, step.id)}")
        elif view.state.status == "cancelled":  # nothing open or locked goes on after a cancel
            lines.append(f"- ✗ {label} — {view.t('已取消', 'cancelled')}")
        elif st.status == "active":
            blockers = missing_for(view, step)
            extra = (view.t(" — 等待：", " — waiting for: ") + _sep(view).join(blockers)) if blockers else ""
            lines.append(f"- ● {label} — {view.t('进行中', 'in progress')}{extra}")
        else:
            blockers = missing_for(view, step)
            why = (view.t("锁定，需先完成：", "locked until: ") + _sep(view).join(blockers)) if blockers else \
                view.t("未开始", "not started")
            lines.append(f"- 🔒 {label} — {why}")
    if view.state.questions:
        # The employee's questions stay in sight until answered (each has its own card too).
        lines += ["", f"**{view.t('员工提问', 'Questions from the employee')}**"]
        for q in view.state.questions.values():
            state = view.t("已回复", "answered") if q.answered else view.t("待回复", "waiting for an answer")
            lines.append(f"- {view.case_id}-{q.id} · {state} · {q.text[:60]}")
    done = sum(1 for st in view.state.steps.values() if st.status == "done")
    blockers = close_blockers(view)
    buttons: list[Button] = []
    if view.state.status == "open":
        reason = (view.t("不能结案，还缺：", "Cannot close yet; missing: ") + _sep(view).join(blockers)) \
            if blockers else None
        buttons.append(Button(label=view.t("结案", "Close case"), action="close", enabled=reason is None,
                              reason=reason, style="primary"))
        buttons.append(Button(label=view.t("催办", "Remind now"), action="remind"))
    status_zh, status_en = _CASE_STATUS.get(view.state.status, (view.state.status, view.state.status))
    return Card(
        title=view.t(f"离职流程 {view.case_id}", f"Case {view.case_id}"),
        summary=view.t(f"{view.employee_name} · {status_zh} · 已完成 {done}/{len(view.template)} 步",
                       f"{view.employee_name} · {status_en} · {done}/{len(view.template)} steps done"),
        fields=(*_case_fields(view), (view.t("原因", "Reason"), view.reason or "—")),
        body="\n".join(lines), buttons=tuple(buttons),
        status=view.t(f"状态：{status_zh}", f"Status: {status_en}"),
        tone="done" if view.state.status == "completed" else ("closed" if view.state.status == "cancelled"
                                                              else "info"),
        case_id=view.case_id, purpose="summary", language=view.language,
    )


def _summary_compact(view: CaseView) -> Card:
    """The summary where every update costs: what never changes while the case runs (the case, the
    employee, the reason), the live page for the rest, and a reminder button. Nothing on it depends
    on the steps or the case's status, so no update of it is ever sent; the case's end reaches HR as
    the completion (or cancellation) card."""
    buttons = (Button(label=view.t("查看进度", "Live progress"), url=view.progress_url, style="primary"),
               Button(label=view.t("催办", "Remind now"), action="remind"))
    return Card(
        title=view.t(f"离职流程 {view.case_id}", f"Case {view.case_id}"),
        summary=view.employee_name,
        fields=(*_case_fields(view), (view.t("原因", "Reason"), view.reason or "—")),
        body=view.t("每一步的进度、文件和时间线随时见「查看进度」；流程结束时你会另外收到通知。",
                    "Every step's progress, the documents and the timeline are always on \"Live progress\"; "
                    "you are told separately when the case ends."),
        buttons=buttons, status=view.t("流程已开始", "Case opened"), tone="info",
        case_id=view.case_id, purpose="summary", language=view.language,
    )


def build(view: CaseView, purpose: str, step_id: str | None) -> Card:
    if purpose == "summary":
        return summary_card(view)
    if purpose == "completion":
        return completion_card(view)
    if purpose in ("cancelled", "rejected", "seal_failed"):
        return notice_card(view, step_id, purpose=purpose)
    if step_id is None:
        return summary_card(view)
    if purpose in ("alert", "fallback"):
        return alert_card(view, step_id, purpose=purpose)
    return step_card(view, step_id, purpose=purpose)
