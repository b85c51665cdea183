"""The departing employee's own view of their case (`/进度`): what is done, what comes next and
why, by when, what is still locked and why, and their questions to HR. Pure: a `CaseView` in,
text out; the same facts the cards show, gathered on one screen."""

from __future__ import annotations

from cards.builders import _CASE_STATUS, deadline, done_line, missing_for, not_needed_line
from cards.questions import question_ref
from cards.view import CaseView
from workflow.model import Role


def employee_progress(view: CaseView) -> str:
    t = view.t
    template, state = view.template, view.state
    status_zh, status_en = _CASE_STATUS.get(state.status, (state.status, state.status))
    done = [s for s in template.steps if view.st(s.id).status == "done"]
    lines = [t(f"你的离职流程 {view.case_id} · {template.title.zh} · {status_zh}",
               f"Your offboarding {view.case_id} · {template.title.en} · {status_en}")]
    if view.last_day:
        lines.append(t(f"最后工作日：{view.last_day.isoformat()}", f"Last working day: {view.last_day.isoformat()}"))
    lines += ["", t(f"已完成（{len(done)}/{len(template)}）：", f"Done ({len(done)} of {len(template)}):")]
    lines += [f"✓ {s.number}. {s.title.get(view.language)} — {done_line(view, s.id)}" for s in done] or ["—"]
    skipped = [s for s in template.steps if view.st(s.id).status == "not_needed"]
    lines += [f"– {s.number}. {s.title.get(view.language)} — {not_needed_line(view, s.id)}" for s in skipped]
    if state.status == "open":
        active = [template.step(sid) for sid in state.active_steps()]
        lines += ["", t("下一步：", "Next:")]
        for s in active:
            turn = s.turn(view.st(s.id))
            yours = turn[1] == Role.EMPLOYEE if turn is not None else s.role == Role.EMPLOYEE
            who = t("由你办理", "yours to do") if yours else t(f"由{view.role_title(s.role)}办理",
                                                               f"for the {view.role_title(s.role)}")
            lines.append(f"● {s.number}. {s.title.get(view.language)} — {who}；"
                         if view.language == "zh" else f"● {s.number}. {s.title.en} — {who};")
            lines.append(t(f"  截止：{deadline(view, s)}", f"  due: {deadline(view, s)}"))
            lines.append(t(f"  要做什么：{s.ask.zh}", f"  what: {s.ask.en}"))
            lines.append(t(f"  为什么：{s.why.zh}", f"  why: {s.why.en}"))
            waiting = missing_for(view, s)
            if waiting:
                sep = "、" if view.language == "zh" else ", "
                lines.append(t("  还差：", "  still missing: ") + sep.join(waiting))
        if not active:
            lines.append("—")
        locked = [s for s in template.steps if view.st(s.id).status == "locked" and not s.fallback_only]
        if locked:
            lines += ["", t("尚未开放：", "Not open yet:")]
            for s in locked:
                why = missing_for(view, s)
                reason = (t("需先完成：", "waits for: ") + ("、" if view.language == "zh" else ", ").join(why)) \
                    if why else t("稍后开放", "opens later")
                lines.append(f"🔒 {s.number}. {s.title.get(view.language)} — {reason}")
    if state.questions:
        lines += ["", t("你向 HR 提的问题：", "Your questions to HR:")]
        for q in state.questions.values():
            ref = question_ref(view.case_id, q.id)
            if q.answered:
                lines.append(t(f"- {ref}：{q.text} → {view.name(q.answered_by)} 已回复：{q.answer}",
                               f"- {ref}: {q.text} → answered by {view.name(q.answered_by)}: {q.answer}"))
            else:
                lines.append(t(f"- {ref}：{q.text}（等待 HR 回复）", f"- {ref}: {q.text} (waiting for HR)"))
    if state.status == "open":
        lines += ["", t("有疑问可直接发消息给我，或点卡片上的「问HR」，问题会转给 HR 并记入档案。",
                        "Questions: just write to me or tap \"Ask HR\" on a card; HR gets it and it is kept "
                        "in your case record.")]
    return "\n".join(lines)
