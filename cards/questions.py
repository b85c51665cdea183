"""Cards of the employee's questions to HR: HR's card (with the case's context and a reply box)
and the employee's card with the answer. Pure, like every builder: a `CaseView` in, a `Card` out.
Their `step_id` is the question id, so answering updates HR's card in place like a step's."""

from __future__ import annotations

from cards.builders import _case_fields, _closed_status, ask_button, span
from cards.model import Button, Card, FormField
from cards.view import CaseView
from workflow.model import Question, Role

QUESTION_PURPOSES = frozenset({"question", "question_reminder", "answer"})


def question_ref(case_id: str, question_id: str) -> str:
    """How HR names a question in chat: `/answer OB-7KX3PZ-Q1 ...`."""
    return f"{case_id}-{question_id}"


def _step_label(view: CaseView, step_id: str) -> str:
    step = view.step(step_id)
    return view.t(f"第 {step.number} 步「{step.title.zh}」（{view.role_title(step.role)}）",
                  f"step {step.number} \"{step.title.en}\" ({view.role_title(step.role)})")


def _where(view: CaseView, q: Question) -> list[tuple[str, str]]:
    sep = "；" if view.language == "zh" else "; "
    now = [_step_label(view, sid) for sid in view.state.active_steps()]
    fields = [(view.t("当前步骤", "Where the case stands"), sep.join(now) or (_closed_status(view) or "—"))]
    if q.step_id and q.step_id in view.template:
        fields.append((view.t("提问时针对", "Asked about"), _step_label(view, q.step_id)))
    return fields


def _answered_line(view: CaseView, q: Question) -> str:
    return view.t(f"已由 {view.name(q.answered_by)} 于 {view.local(q.answered_at)} 回复",
                  f"Answered by {view.name(q.answered_by)} at {view.local(q.answered_at)}")


def question_card(view: CaseView, question_id: str, *, purpose: str) -> Card:
    """HR's card: who asks, on which case and step, what; answered in place or by `/回复`."""
    q = view.state.questions[question_id]
    ref = question_ref(view.case_id, q.id)
    hours = view.template.policy.question_remind_after_hours
    due = q.asked_at.timestamp() + hours * 3600
    fields = [*_case_fields(view), (view.t("问题编号", "Question"), ref),
              (view.t("提问人", "Asked by"), view.name(q.asked_by)),
              (view.t("提问时间", "Asked at"), view.local(q.asked_at)), *_where(view, q)]
    body = [f"**{view.t('员工的问题', 'The question')}**", q.text]
    buttons: list[Button] = []
    if q.answered:
        body += ["", f"**{view.t('回复', 'Answer')}**", q.answer or ""]
        status, tone = _answered_line(view, q), "done"
    elif view.state.status != "open":
        status, tone = (_closed_status(view) or "") + view.t("，未回复", ", not answered"), "closed"
    else:
        body += ["", view.t(f"点「回复」作答，或在聊天中发送：/回复 {ref} <回复内容>。问答记入流程档案。",
                            f"Tap Answer, or send in chat: /answer {ref} <your answer>. Question and answer "
                            "go into the case record.")]
        status = view.t(f"等待回复（应在提问后 {span(view, hours)}内回复）",
                        f"Waiting for an answer (due within {span(view, hours)} of asking)")
        tone = "warning" if purpose == "question_reminder" or view.now.timestamp() > due else "action"
        if Role.HR in view.recipient_roles:
            buttons.append(Button(label=view.t("回复", "Answer"), action="answer", style="primary",
                                  form=(FormField("answer", view.t("回复内容", "Your answer")),)))
    title = view.t("员工提问", "A question from the employee")
    if purpose == "question_reminder" and not q.answered and view.state.status == "open":
        title = view.t(f"提醒：员工的问题已超过 {span(view, hours)}未回复",
                       f"Reminder: a question unanswered for more than {span(view, hours)}")
    return Card(title=title, summary=view.t(f"{view.employee_name} 的离职流程", f"Offboarding of {view.employee_name}"),
                fields=tuple(fields), body="\n".join(body), buttons=tuple(buttons), status=status,
                tone=tone, case_id=view.case_id, step_id=q.id, purpose=purpose,  # type: ignore[arg-type]
                language=view.language)


def answer_card(view: CaseView, question_id: str) -> Card:
    """The employee's card: their question and HR's answer (and they may ask again)."""
    q = view.state.questions[question_id]
    body = [f"**{view.t('你的问题', 'Your question')}**", q.text, "",
            f"**{view.t('HR 的回复', 'HR answered')}**", q.answer or ""]
    ask = ask_button(view)
    return Card(title=view.t("HR 回复了你的问题", "HR answered your question"),
                summary=view.t(f"{view.employee_name} 的离职流程", f"Offboarding of {view.employee_name}"),
                fields=(*_case_fields(view), (view.t("问题编号", "Question"), question_ref(view.case_id, q.id))),
                body="\n".join(body), buttons=(ask,) if ask else (), status=_answered_line(view, q), tone="done",
                case_id=view.case_id, step_id=q.id, purpose="answer", language=view.language)


def build_question(view: CaseView, purpose: str, question_id: str) -> Card | None:
    q = view.state.questions.get(question_id)
    if q is None:
        return None
    if purpose == "answer":
        return answer_card(view, question_id) if q.answered else None
    return question_card(view, question_id, purpose=purpose)
