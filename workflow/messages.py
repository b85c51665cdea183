"""Bilingual wording of refusals. Each message names the step (number and title) and what is missing,
because it is shown verbatim on a disabled button or as the bot's answer."""

from __future__ import annotations

from collections.abc import Iterable

from workflow.documents import document_title
from workflow.model import ROLE_TITLES, Role
from workflow.template import StepTemplate
from workflow.text import Text


def step_label(step: StepTemplate) -> Text:
    return Text(f"第 {step.number} 步 {step.title.zh}", f"step {step.number} {step.title.en}")


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _docs_zh(kinds: Iterable[str]) -> str:
    return "、".join(f"《{document_title(k).zh}》" for k in kinds)


def _docs_en(kinds: Iterable[str]) -> str:
    return ", ".join(f"the signed {document_title(k).en}" for k in kinds)


def wrong_role(step: StepTemplate | None, needed: Role) -> Text:
    role = ROLE_TITLES[needed]
    if step is None:
        return Text(f"只有{role.zh}可以执行此操作。", f"Only {role.en} can do this.")
    label = step_label(step)
    return Text(
        f"您无权处理{label.zh}：此步骤由{role.zh}处理。",
        f"You cannot act on {label.en}: it is for the {role.en}.",
    )


def unfinished(step: StepTemplate, missing_docs: tuple[str, ...]) -> Text:
    """One unfinished step, naming its unsigned documents when those are what is missing."""
    label = step_label(step)
    if missing_docs:
        return Text(
            f"缺少已签署的{_docs_zh(missing_docs)}（{label.zh}）",
            f"missing {_docs_en(missing_docs)} ({label.en})",
        )
    return Text(f"{label.zh} 未完成", f"{label.en} is not done")


def locked(step: StepTemplate, blockers: list[Text]) -> Text:
    label = step_label(step)
    return Text(
        f"{label.zh} 尚未开放，需先完成前序步骤：" + "；".join(b.zh for b in blockers) + "。",
        f"{_cap(label.en)} is not open yet; first: " + "; ".join(b.en for b in blockers) + ".",
    )


def not_active(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(
        f"{label.zh} 仅在启动补救送达流程（邮寄/登报）后开放。",
        f"{_cap(label.en)} only opens once the fallback delivery (mail / newspaper) has started.",
    )


def already_done(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 已完成，无需重复操作。", f"{_cap(label.en)} is already done.")


def already_signed(step: StepTemplate, document: str) -> Text:
    title = document_title(document)
    return Text(
        f"《{title.zh}》已签署（{step_label(step).zh}），无需重复签署。",
        f"The {title.en} is already signed ({step_label(step).en}).",
    )


def bad_action(step: StepTemplate, action: str, allowed: tuple[str, ...]) -> Text:
    label = step_label(step)
    if not allowed:
        return Text(
            f"{label.zh} 需在签署页面签署{_docs_zh(step.documents)}完成，不能直接点击完成。",
            f"{_cap(label.en)} is completed by signing {', '.join(document_title(d).en for d in step.documents)}"
            " on the signing page.",
        )
    return Text(
        f"{label.zh} 不支持操作“{action}”（可用：{'、'.join(allowed)}）。",
        f"{_cap(label.en)} does not accept '{action}' (allowed: {', '.join(allowed)}).",
    )


def foreign_document(step: StepTemplate, document: str) -> Text:
    title = document_title(document)
    label = step_label(step)
    return Text(f"{label.zh} 不需要签署《{title.zh}》。", f"{_cap(label.en)} does not take the {title.en}.")


def missing_documents(step: StepTemplate, kinds: tuple[str, ...]) -> Text:
    label = step_label(step)
    return Text(
        f"无法完成{label.zh}：缺少已签署的{_docs_zh(kinds)}。",
        f"Cannot complete {label.en}: missing {_docs_en(kinds)}.",
    )


def missing_data(step: StepTemplate, missing: list[Text], invalid: list[Text]) -> Text:
    label = step_label(step)
    zh, en = [], []
    if missing:
        zh.append("请填写：" + "、".join(t.zh for t in missing))
        en.append("please fill in: " + ", ".join(t.en for t in missing))
    if invalid:
        zh.append("格式不正确：" + "、".join(t.zh for t in invalid))
        en.append("invalid: " + ", ".join(t.en for t in invalid))
    return Text(f"无法完成{label.zh}，" + "；".join(zh) + "。", f"Cannot complete {label.en}: " + "; ".join(en) + ".")


def reason_required(step: StepTemplate | None) -> Text:
    if step is None:
        return Text("撤销案件时请填写原因。", "Please give a reason for cancelling the case.")
    label = step_label(step)
    return Text(f"驳回{label.zh}时请填写原因。", f"Please give a reason for rejecting {label.en}.")


def case_closed(status: str) -> Text:
    if status == "cancelled":
        return Text("该案件已撤销，不能再操作。", "This case was cancelled; nothing more can be done on it.")
    return Text("该案件已完成，不能再操作。", "This case is completed; nothing more can be done on it.")


def incomplete(items: list[Text]) -> Text:
    return Text("无法结案：" + "；".join(i.zh for i in items), "Cannot close: " + "; ".join(i.en for i in items))


def unknown_step(step_id: str) -> Text:
    return Text(f"此流程中没有步骤“{step_id}”。", f"This flow has no step '{step_id}'.")


def already_started() -> Text:
    return Text("案件已启动。", "The case has already started.")


def unknown_question(question_id: str) -> Text:
    return Text(f"此流程中没有问题 {question_id}。", f"This case has no question {question_id}.")


def already_answered(question_id: str) -> Text:
    return Text(f"问题 {question_id} 已经回复过了。", f"Question {question_id} has already been answered.")


def empty_text(what: Text) -> Text:
    return Text(f"请填写{what.zh}。", f"Please write the {what.en}.")


def too_long(what: Text, limit: int) -> Text:
    return Text(f"{what.zh}太长了（最多 {limit} 字），请精简后重发。",
                f"The {what.en} is too long (at most {limit} characters); please shorten it.")


def too_many_questions(limit: int) -> Text:
    return Text(f"此流程的问题已达 {limit} 个上限，请直接联系 HR。",
                f"This case already holds {limit} questions, the most it takes; please contact HR directly.")


QUESTION = Text("问题", "question")
ANSWER = Text("回复内容", "answer")


def not_done_yet(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(f"{label.zh}尚未完成，直接在卡片上办理即可，无需重做。",
                f"{_cap(label.en)} is not done yet: act on its card, there is nothing to redo.")


def not_reopenable(step: StepTemplate, later: StepTemplate, signed: bool) -> Text:
    label, after = step_label(step), step_label(later)
    if signed:
        return Text(f"不能重做{label.zh}：{after.zh}的文件已签署。",
                    f"Cannot redo {label.en}: the document of {after.en} is already signed.")
    return Text(f"不能重做{label.zh}：{after.zh}已完成。",
                f"Cannot redo {label.en}: {after.en} is already done.")


# Why a step was closed as not needed (StepState.outcome of a not_needed step, details in its data).
NOT_NEEDED = Text("不再需要", "no longer needed")


def not_needed_reason(by_id: dict[str, StepTemplate], outcome: str | None, data: dict[str, object]) -> Text:
    """The reason a not_needed step shows on cards and in /status."""
    other = by_id.get(str(data.get("step"))) if data.get("step") else None
    if outcome == "branch" and other is not None:
        value = data.get("outcome")
        label = other.option_label(other.outcome_field, value) if other.outcome_field else None
        shown = label or Text(str(value), str(value))
        return Text(f"{step_label(other).zh}的结果为「{shown.zh}」",
                    f"{step_label(other).en} ended as \"{shown.en}\"")
    if outcome == "after" and other is not None:
        return Text(f"{step_label(other).zh}不再需要", f"{step_label(other).en} is no longer needed")
    return Text("流程已完成，此步骤为可选步骤", "the case completed; this step was optional")


def not_needed(step: StepTemplate, reason: Text) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 不再需要（{reason.zh}），无需操作。",
                f"{_cap(label.en)} is no longer needed ({reason.en}); nothing to do.")


def not_your_turn(step: StepTemplate, document: str, waiting_for: Role) -> Text:
    """A later signer of a document several people sign, before the earlier ones have."""
    title, who = document_title(document), ROLE_TITLES[waiting_for]
    return Text(f"《{title.zh}》需先由{who.zh}签署，轮到您时会另行通知（{step_label(step).zh}）。",
                f"The {title.en} must first be signed by the {who.en}; you will be told when it is your turn "
                f"({step_label(step).en}).")


def signed_by_you(step: StepTemplate, document: str, waiting_for: Role | None) -> Text:
    title = document_title(document)
    if waiting_for is None:
        return already_signed(step, document)
    who = ROLE_TITLES[waiting_for]
    return Text(f"您已签署《{title.zh}》，正在等待{who.zh}签署。",
                f"You have signed the {title.en}; it is waiting for the {who.en}.")


def nothing_to_prepare(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 没有可由 HR 补充的内容。", f"{_cap(label.en)} takes no additions from HR.")


def prepare_after_signing(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 的文件已开始签署，不能再补充内容；如需修改请取消后重新发起。",
                f"Signing of {label.en} has begun, so nothing can be added to its document any more.")


def unknown_fields(step: StepTemplate, keys: list[str]) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 没有这些可补充的内容：{'、'.join(keys)}。",
                f"{_cap(label.en)} takes no additions named {', '.join(keys)}.")


def nothing_added(step: StepTemplate) -> Text:
    label = step_label(step)
    return Text(f"请填写要为{label.zh}补充的内容。", f"Please enter what to add to {label.en}.")


def fallback_already() -> Text:
    return Text("备用送达（邮寄/登报）已经启动，无需重复启动。",
                "The fallback delivery (mail / newspaper) has already started.")


def no_fallback(title: Text) -> Text:
    return Text(f"「{title.zh}」没有等待员工签收的步骤，无需启动备用送达（邮寄/登报）。",
                f"\"{title.en}\" has no step waiting for the employee's signature, so there is nothing to "
                "deliver by mail or newspaper.")


def not_a_file_field(step: StepTemplate, key: str) -> Text:
    label = step_label(step)
    return Text(f"{label.zh} 没有可上传文件的项目「{key}」。", f"{_cap(label.en)} takes no file called '{key}'.")
